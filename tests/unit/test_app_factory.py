"""The app granian serves (`slots_service.app:asgi_app`), as a worker process makes it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

_SHOW = (
    "import gc; from slots_service.app import asgi_app; app = asgi_app(); "
    "print(type(app).__name__, gc.get_freeze_count())"
)


def test_the_factory_freezes_what_start_up_made() -> None:
    """Everything the imports and the app made is left out of the collector's passes (a pass
    over all of it was a ~25 ms pause under load), so a worker's heap at start is frozen."""
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
    kind, frozen = done.stdout.split()
    assert kind == "Litestar"
    assert int(frozen) > 10_000  # the imports alone: Litestar, msgspec, asyncpg, redis-py, ...
