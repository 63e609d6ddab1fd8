"""The app granian serves (`slots_service.app:asgi_app`), as a worker process makes it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

_SHOW = (
    "import gc, sys; from slots_service.app import asgi_app; app = asgi_app(); "
    "print(type(app).__name__, gc.get_freeze_count(), sys.getswitchinterval())"
)


def _worker() -> tuple[str, int, float]:
    """The factory run in a process of its own, as a granian worker runs it: the app's type,
    what it froze, and the process's GIL switch interval."""
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",  # the factory connects nothing
        "SLOTS_PII_KEY": "factory-test-pii-key-0123456789",
        "SLOTS_API_KEYS": "k=admin",
    }
    done = subprocess.run(
        [sys.executable, "-c", _SHOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kind, frozen, interval = done.stdout.split()
    return kind, int(frozen), float(interval)


def test_the_factory_freezes_what_start_up_made() -> None:
    """Everything the imports and the app made is left out of the collector's passes (a pass
    over all of it was a ~25 ms pause under load), so a worker's heap at start is frozen."""
    kind, frozen, _ = _worker()
    assert kind == "Litestar"
    assert frozen > 10_000  # the imports alone: Litestar, msgspec, asyncpg, redis-py, ...


def test_a_worker_hands_the_gil_over_within_a_millisecond() -> None:
    """granian's threads hand the event loop each request under the GIL: a worker lets a
    thread that asks for it wait at most 1 ms (Python's default is 5 ms)."""
    _, _, interval = _worker()
    assert interval == 0.001
