"""L_http_get and L_http_post: the bare Litestar app (app.py) under granian, 1 worker, driven
by the bench's own load generator (loadgen.py, 64 keep-alive connections, one request in
flight each), as the bench drives the service: the ratios compare like with like.

L_http_get: GET /ping. L_http_post: POST /v1/bookings with the bench's booking body, decoded
into a msgspec Struct. A figure counts 2xx answers only, and is None if more than 0.1% of the
answers were anything else.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import IO, Any

import httpx

from ...devservers import die_with_parent, free_port
from ..procs import CODE_ROOT, run_child, stop_group
from .common import Ceiling, Durations, Progress

KEYS = ("L_http_get", "L_http_post")
CONNECTIONS = 64
SERVER = "granian 1 worker (bare Litestar app)"

# Sent as the bench sends its API key; the bare app ignores it.
_IGNORED_KEY = "ceilings"


def measure(durations: Durations, log: IO[str], progress: Progress) -> list[Ceiling]:
    port = free_port()
    log.write(f"=== ceilings: bare app under granian on port {port} ===\n")
    log.flush()
    server = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
        [sys.executable, "-m", "slots_service.bench.ceilings.app", str(port)],
        cwd=CODE_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        process_group=0,  # stopped by us, in order, with its worker
        preexec_fn=die_with_parent(),
    )
    try:
        _wait_ready(server, port)
        return [_load(key, port, durations, progress) for key in KEYS]
    finally:
        stop_group(server, signal.SIGINT)


def _wait_ready(server: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"granian exited ({server.returncode}) while starting")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("granian not ready after 30 s")


def _load(key: str, port: int, durations: Durations, progress: Progress) -> Ceiling:
    post = key == "L_http_post"
    progress(f"ceilings: {key}, loadgen.py {CONNECTIONS} connections, {durations.seconds:g} s ...")
    result = run_child("loadgen", _spec(port, durations, post))
    statuses: dict[str, int] = result["statuses"]
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    what = "POST /v1/bookings into a msgspec Struct" if post else "GET /ping (tiny JSON)"
    how = (
        f"loadgen.py {CONNECTIONS} connections {durations.seconds:g} s "
        f"(+{durations.warmup:g} s warm-up), {what}, {SERVER}"
    )
    others = sum(statuses.values()) - ok
    if ok == 0 or others > 0.001 * sum(statuses.values()):
        return Ceiling(key, None, f"{how}; answers {statuses}")
    return Ceiling(key, int(ok / float(result["seconds"])), how)


def _spec(port: int, durations: Durations, post: bool) -> dict[str, Any]:
    """The load generator's spec: what the bench sends the service, to the bare app."""
    spec: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "token": _IGNORED_KEY,
        "concurrency": CONNECTIONS,
        "warmup": durations.warmup,
        "seconds": durations.seconds,
    }
    if not post:
        return {**spec, "kind": "get", "paths": ["/ping"]}
    booking = {"office_id": "ceiling-office", "service_id": "ceiling-service"}
    return {
        **spec,
        "kind": "book",
        **booking,
        "slots": [["2026-11-25", "09:00"]],
        "tag": 0,
        "first_person": 0,
    }
