"""L_redis_lua and L_redis_lua_p16: the project's gate script, lua/take.lua, alone on Valkey.

The script is called as the service calls it (EVALSHA, the day's hash and the attempt key, a
window start, 1 seat) with the attempt counter off (limit 0): the seats' check-and-take only.
The client speaks RESP on raw sockets with pre-encoded calls, so that it costs as little as
possible per call (redis-py would measure itself):

- L_redis_lua: one blocking connection, one call in flight: bound by the loopback round trip;
- L_redis_lua_p16: 16 connections (uvloop), each sending 16 calls at once and waiting for the
  16 replies (redis-benchmark -P 16): what the server itself can execute.

Checked on every run: the seats taken on the server equal the replies counted (an error reply
takes none), else the figure is None.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from functools import partial
from importlib import resources
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import redis

from ...counters import day_key
from .common import Ceiling, Durations, Progress

KEYS = ("L_redis_lua", "L_redis_lua_p16")
DAYS = [day_key(f"ceiling-{i:02d}", date(2026, 11, 25)) for i in range(64)]
WINDOWS = [f"{8 + i // 2:02d}:{30 * (i % 2):02d}" for i in range(24)]
SEATS = 10**12  # per window: no run can empty one
POOL = 4096  # pre-encoded calls, cycled through
CONNECTIONS, PIPELINE = 16, 16


class _Run(NamedTuple):
    per_s: float  # over the measured part
    calls: int  # every reply, warm-up included: what the check compares


@dataclass
class _PipeState:
    done: asyncio.Future[None]
    open: int = CONNECTIONS
    calls: int = 0
    stopping: bool = False


def measure(url: str, durations: Durations, progress: Progress) -> list[Ceiling]:
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 6379
    client = redis.Redis.from_url(url)
    try:
        pool = _calls(_prepare(client))
        progress(f"ceilings: L_redis_lua, 1 connection, {durations.gate_s:g} s ...")
        serial, serial_check = _checked(client, lambda: _serial(host, port, pool, durations))
        progress(f"ceilings: L_redis_lua_p16, {CONNECTIONS} x {PIPELINE}, ...")
        piped, piped_check = _checked(
            client, lambda: _run_async(_piped(host, port, pool, durations))
        )
    finally:
        client.close()
    how = f"take.lua by EVALSHA on Valkey, python raw-RESP client, {durations.gate_s:g} s"
    return [
        Ceiling(KEYS[0], serial, f"{how}, 1 connection, 1 call in flight{serial_check}"),
        Ceiling(KEYS[1], piped, f"{how}, {CONNECTIONS} connections x {PIPELINE}{piped_check}"),
    ]


def _prepare(client: redis.Redis) -> str:
    """Fill the windows, load the script; its SHA."""
    client.flushall()
    with client.pipeline(transaction=False) as pipe:
        for day in DAYS:
            pipe.hset(day, mapping=dict.fromkeys(WINDOWS, SEATS))
        pipe.execute()
    script = resources.files("slots_service").joinpath("lua/take.lua").read_text()
    return str(client.script_load(script))


def _calls(sha: str) -> list[bytes]:
    """Gate calls on random windows, as counters.Counters.take makes them (limit 0)."""
    # The same calls each run; nothing secret.
    rng = random.Random(42)  # nosec B311
    calls = []
    for _ in range(POOL):
        day = rng.choice(DAYS)
        args = ("EVALSHA", sha, 2, day, f"{day}:tries:ceiling", rng.choice(WINDOWS), 1, 0, 0)
        calls.append(_resp(*args))
    return calls


def _resp(*args: str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _taken(client: redis.Redis) -> int:
    with client.pipeline(transaction=False) as pipe:
        for day in DAYS:
            pipe.hvals(day)
        found = cast(list[list[bytes]], pipe.execute())
    return sum(SEATS - int(left) for day in found for left in day)


def _checked(client: redis.Redis, run: Callable[[], _Run]) -> tuple[int | None, str]:
    """The run's calls/s if the seats taken on the server match the replies, and a note."""
    before = _taken(client)
    result = run()
    taken = _taken(client) - before
    if taken != result.calls:
        return None, f"; INCONSISTENT: {taken} seats taken for {result.calls} replies"
    return int(result.per_s), ""


def _serial(host: str, port: int, pool: list[bytes], durations: Durations) -> _Run:
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        warm = _call_for(sock, pool, durations.gate_warmup_s, first=0)
        started = time.perf_counter()
        calls = _call_for(sock, pool, durations.gate_s, first=warm)
        took = time.perf_counter() - started
    return _Run((calls - warm) / took, calls)


def _call_for(sock: socket.socket, pool: list[bytes], seconds: float, first: int) -> int:
    """Call, one at a time, for `seconds`; the count of calls so far, from `first`."""
    count, end = first, time.perf_counter() + seconds
    while True:
        sock.sendall(pool[count % POOL])
        reply = sock.recv(512)
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(512)
        count += 1
        # perf_counter on every call would cost about as much as the call's client side.
        if not count % 128 and time.perf_counter() >= end:
            return count


class _Piped(asyncio.Protocol):
    """One connection: PIPELINE calls written at once, the next batch when all replied."""

    def __init__(self, state: _PipeState, batches: list[bytes], first: int) -> None:
        self.state, self.batches, self.next = state, batches, first
        self.transport: asyncio.Transport | None = None
        self.waiting = 0
        self.cr = False  # the last chunk ended inside a CRLF

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.waiting = PIPELINE
        self.transport.write(self.batches[self.next % len(self.batches)])
        self.next += 1

    def data_received(self, data: bytes) -> None:
        # Every reply is one line (":<seats left>" or "-<error>"): count the line ends.
        replies = data.count(b"\r\n") + (self.cr and data.startswith(b"\n"))
        self.cr = data.endswith(b"\r")
        self.state.calls += replies
        self.waiting -= replies
        if self.waiting > 0:
            return
        if not self.state.stopping:
            self._send()
            return
        assert self.transport is not None
        self.transport.close()
        self.state.open -= 1
        if self.state.open == 0:
            self.state.done.set_result(None)


async def _piped(host: str, port: int, pool: list[bytes], durations: Durations) -> _Run:
    loop = asyncio.get_running_loop()
    state = _PipeState(done=loop.create_future())
    batches = [b"".join(pool[i : i + PIPELINE]) for i in range(0, POOL, PIPELINE)]
    for n in range(CONNECTIONS):
        # Each connection starts at its own batch, so they do not hit the same windows.
        await loop.create_connection(partial(_Piped, state, batches, n * 7), host, port)
    await asyncio.sleep(durations.gate_warmup_s)
    calls0, t0 = state.calls, time.perf_counter()
    await asyncio.sleep(durations.gate_s)
    calls1, t1 = state.calls, time.perf_counter()
    state.stopping = True
    await asyncio.wait_for(state.done, timeout=10)
    return _Run((calls1 - calls0) / (t1 - t0), state.calls)


def _run_async(main: Coroutine[Any, Any, _Run]) -> _Run:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
