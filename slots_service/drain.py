"""A drain that is true: /readyz answers 503 while the API still serves, then serving stops.

granian tells a worker's app about shutdown (lifespan.shutdown) only once it stopped serving
(granian issue #547), so a flag set there is seen by no request. Instead, `serve` keeps a
runtime directory its workers share; a `draining` file there turns every worker's /readyz to
503. On SIGTERM the serve process writes it and goes on serving for SLOTS_DRAIN_SECONDS (at
once if `slots-service drain`, the preStop hook, wrote it and waited already), and only then
stops the workers, each given SLOTS_WORKERS_KILL_TIMEOUT seconds to finish its requests. A second
SIGTERM, or SIGINT (Ctrl-C), stops at once.

The directory also holds the workers' metrics (`metrics/`, PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import Settings, export

log = logging.getLogger(__name__)
DRAINING = "draining"
METRICS = "metrics"


def runtime_dir(settings: Settings) -> Path:
    if settings.runtime_dir:
        return Path(settings.runtime_dir)
    return Path(tempfile.gettempdir()) / f"slots-service-{settings.port}"


def prepare(settings: Settings) -> Path:
    """Before the workers exist: a fresh runtime directory (no draining mark, no metrics of an
    earlier run), exported to the workers with PROMETHEUS_MULTIPROC_DIR."""
    path = runtime_dir(settings)
    clear(path)
    (path / METRICS).mkdir(parents=True, mode=0o700)
    export({"SLOTS_RUNTIME_DIR": str(path), "PROMETHEUS_MULTIPROC_DIR": str(path / METRICS)})
    return path


def clear(path: Path) -> None:
    """Remove what serve put there (and the directory, if that leaves it empty)."""
    with contextlib.suppress(FileNotFoundError):
        (path / DRAINING).unlink()
    shutil.rmtree(path / METRICS, ignore_errors=True)
    with contextlib.suppress(OSError):
        path.rmdir()


def mark(path: Path) -> bool:
    """Mark draining; False if it was marked already."""
    try:
        fd = os.open(path / DRAINING, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def draining(settings: Settings) -> bool:
    """Whether this process's serve is draining (never outside `serve`)."""
    return bool(settings.runtime_dir) and os.path.exists(
        os.path.join(settings.runtime_dir, DRAINING)
    )


def drain_command(settings: Settings, seconds: float | None) -> int:
    """`slots-service drain`, the preStop hook: mark draining, wait while the load balancers
    see /readyz 503 and stop sending; the SIGTERM that follows then stops serving at once."""
    path = runtime_dir(settings)
    if not (path / METRICS).is_dir():
        print(f"slots-service drain: no serve runs here ({path})", flush=True)
        return 1
    mark(path)
    time.sleep(settings.drain_seconds if seconds is None else seconds)
    return 0


def server(settings: Settings, path: Path, **options: Any) -> Any:
    """A granian server whose SIGTERM drains first, and which drops the live gauges of every
    worker it stopped or replaced."""
    from granian import Granian
    from prometheus_client.multiprocess import mark_process_dead

    metrics_dir = str(path / METRICS)

    def forget(pids: list[int | None]) -> None:
        for pid in pids:
            if pid is not None:
                mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]

    class DrainingServer(Granian):  # type: ignore[misc, valid-type]
        _drain_started = False

        def signal_handler_interrupt(self, signum: int = 0, *args: Any, **kwargs: Any) -> None:
            stop = super().signal_handler_interrupt
            if self._drain_started or signum == signal.SIGINT:
                stop()
                return
            self._drain_started = True
            if not mark(path) or settings.drain_seconds <= 0:  # the preStop drained already
                stop()
                return
            log.info("draining: /readyz 503, serving stops in %.1f s", settings.drain_seconds)
            # A kernel interval timer, not a thread waiting with a timeout: a relative timer
            # holds whatever a clock says (a thread's timed wait is an absolute instant).
            signal.signal(signal.SIGALRM, lambda *_: stop())
            signal.setitimer(signal.ITIMER_REAL, settings.drain_seconds)

        def _stop_workers(self) -> None:
            pids = [w.inner.pid for w in self.wrks]
            super()._stop_workers()
            forget(pids)

        def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> None:
            pids = [self.wrks[i].inner.pid for i in workers]
            super()._respawn_workers(workers, *args, **kwargs)
            forget(pids)

    return DrainingServer(
        workers_kill_timeout=settings.workers_kill_timeout or None,
        **options,
    )
