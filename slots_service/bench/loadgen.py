"""The load generator of `slots-service bench`, run in its own process (`python -m
slots_service.bench.loadgen`): HTTP/1.1 keep-alive connections, one request in flight each, a fresh
body per request; it reads its spec as JSON on stdin and prints what it counted as JSON.

Latency is the time from writing a request to having read its whole response.

Two shapes of run: timed (`warmup` then `seconds` measured, connections kept busy) or a crowd
(`total` requests in all, each connection sending its next one as soon as it has an answer,
every answer measured, done when the last one came back). A crowd may first send `go`, one raw
request on a connection of its own (the bench's move of the test clock across the opening
instant), and fires once it was answered 2xx, every connection already open.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any, cast

from .procs import child_main


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (0 < q <= 100) of values sorted ascending; None when empty."""
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not sorted_values:
        return None
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds, rounded to 0.01 ms."""
    ordered = sorted(seconds)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "p50": ms(percentile(ordered, 50)),
        "p95": ms(percentile(ordered, 95)),
        "p99": ms(percentile(ordered, 99)),
        "max": ms(ordered[-1] if ordered else None),
        "mean": ms(sum(ordered) / len(ordered) if ordered else None),
    }


def person(n: int, tag: int) -> tuple[str, str]:
    """(id_number, phone) of the bench's n-th person: distinct for each n and run tag."""
    if not 0 <= n < 10_000_000 or not 0 <= tag < 100_000:
        raise ValueError("person number or run tag out of range")
    return f"BN{tag:05d}{n:08d}", f"+86{tag:05d}{n:07d}"


def parse_response(buf: bytes | bytearray) -> tuple[int, bytes, int] | None:
    """One HTTP/1.1 response at the start of `buf`: (status, body, bytes used), or None while
    it is incomplete. Bodies framed by Content-Length or chunked encoding."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    if not head.startswith(b"http/1."):
        raise ValueError(f"not an HTTP/1.x response: {head[:40]!r}")
    status = int(head[9:12])
    body_start = head_end + 4
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        end = body_start + int(head[i + 17 : j if j >= 0 else None])
        if len(buf) < end:
            return None
        return status, bytes(buf[body_start:end]), end
    if b"\r\ntransfer-encoding: chunked" in head:
        pos, chunks = body_start, list[bytes]()
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                return status, b"".join(chunks), trailer_end + 4
            data_start = line_end + 2
            if len(buf) < data_start + size + 2:
                return None
            chunks.append(bytes(buf[data_start : data_start + size]))
            pos = data_start + size + 2
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", body_start
    raise ValueError("response framed neither by Content-Length nor chunked encoding")


def status_label(status: int, body: bytes) -> str:
    """`201`, or `409 slot_full` for an error with a problem `code`."""
    if status < 400:
        return str(status)
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        code = None
    return f"{status} {code}" if isinstance(code, str) else str(status)


def created_timeline(
    load: _Load, since_start: Callable[[float], float | None]
) -> dict[str, float | None]:
    """When the 201s were answered (ms after the first send): the first, the half, the 90th
    percentile and the last; and how long the 201s had waited, p50 and max (ms)."""
    at, waited = sorted(load.created_at), sorted(load.created_waited)
    if not at:
        return {}

    def nth(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {
        "first_ms": since_start(at[0]),
        "half_ms": since_start(nth(at, 0.5)),
        "p90_ms": since_start(nth(at, 0.9)),
        "last_ms": since_start(at[-1]),
        "waited_p50_ms": round(nth(waited, 0.5) * 1000, 1),
        "waited_max_ms": round(waited[-1] * 1000, 1),
    }


class _Load:
    """The shared state of one load run; the connections call back into it."""

    def __init__(self, make: Callable[[int], bytes], total: int = 0) -> None:
        self.make = make
        self.total = total  # requests in all (a crowd), 0: as many as the time allows
        self.next_n = 0
        self.phase = 0  # 0 warm-up, 1 measured, 2 stopping
        self.latencies: array[float] = array("d")
        self.measured: Counter[str] = Counter()
        self.everything: Counter[str] = Counter()
        self.inflight = 0
        self.drained = asyncio.Event()
        self.conn_errors = 0
        self.t_start = 0.0
        self.first_answer = 0.0
        self.last_answer = 0.0
        self.last_201 = 0.0
        self.created_at: array[float] = array("d")  # each 201's answer instant
        self.created_waited: array[float] = array("d")  # and its latency

    def exhausted(self) -> bool:
        return 0 < self.total <= self.next_n

    def request(self) -> bytes:
        n, self.next_n = self.next_n, self.next_n + 1
        self.inflight += 1
        return self.make(n)

    def _settled(self) -> None:
        if self.inflight == 0 and (self.phase == 2 or self.exhausted()):
            self.drained.set()

    def done(self, status: int, body: bytes, sent: float, now: float) -> None:
        self.inflight -= 1
        label = status_label(status, body)
        self.everything[label] += 1
        if not self.first_answer:
            self.first_answer = now
        self.last_answer = now
        if status == 201:
            self.last_201 = now
            self.created_at.append(now)
            self.created_waited.append(now - sent)
        if self.phase == 1:
            self.measured[label] += 1
            self.latencies.append(now - sent)
        self._settled()

    def lost(self) -> None:
        self.inflight -= 1
        self.everything["connection lost"] += 1
        if self.phase == 1:
            self.measured["connection lost"] += 1
        self._settled()


class _Conn(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time."""

    def __init__(self, load: _Load, reconnect: Callable[[], None]) -> None:
        self.load = load
        self.reconnect = reconnect
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.sent = 0.0
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self) -> None:
        if self.load.phase == 2 or self.transport is None or self.transport.is_closing():
            return
        if self.load.exhausted():
            return
        request = self.load.request()
        self.waiting = True
        self.sent = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            try:
                found = parse_response(self.buf)
            except ValueError:
                self.load.conn_errors += 1
                assert self.transport is not None
                self.transport.close()
                return
            if found is None:
                return
            status, body, used = found
            del self.buf[:used]
            if not self.waiting:  # a response nobody asked for
                continue
            self.waiting = False
            self.load.done(status, body, self.sent, time.perf_counter())
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiting:
            self.waiting = False
            self.load.conn_errors += 1
            self.load.lost()
        if self.load.phase < 2:
            self.reconnect()


def _request_maker(spec: Mapping[str, Any]) -> Callable[[int], bytes]:
    """The n-th request of the run: GETs of `paths` in turn, or a booking of a new person
    in each of `slots` in turn."""
    host = f"{spec['host']}:{spec['port']}"
    auth = f"Authorization: Bearer {spec['token']}\r\n"
    if spec["kind"] == "get":
        paths: list[str] = spec["paths"]
        requests = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode() for p in paths]
        return lambda n: requests[n % len(requests)]
    slots: list[list[str]] = spec["slots"]
    office, service = spec["office_id"], spec["service_id"]
    tag, first = int(spec["tag"]), int(spec["first_person"])
    head = f"POST /v1/bookings HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n"

    def make(n: int) -> bytes:
        day, start = slots[n % len(slots)]
        id_number, phone = person(first + n, tag)
        body = (
            f'{{"office_id":"{office}","service_id":"{service}","date":"{day}",'
            f'"start":"{start}","person":{{"id_type":"passport","id_number":"{id_number}",'
            f'"name":"BENCH PERSON","phone":"{phone}"}}}}'
        ).encode()
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    return make


async def _go(host: str, port: int, request: bytes) -> None:
    """Send one raw request on its own connection; fail unless it is answered 2xx."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        buf = bytearray()
        while (found := parse_response(buf)) is None:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("the go request's connection closed unanswered")
            buf += chunk
        if not 200 <= found[0] < 300:
            raise RuntimeError(f"the go request was answered {found[0]}: {found[1][:200]!r}")
    finally:
        writer.close()


async def _drive(spec: Mapping[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = int(spec.get("total") or 0)
    load = _Load(_request_maker(spec), total)
    conns: list[_Conn] = []
    pending: set[asyncio.Task[None]] = set()

    async def connect(start: bool) -> None:
        conn = _Conn(load, reconnect)
        await loop.create_connection(lambda: conn, spec["host"], spec["port"])
        conns.append(conn)
        if start:
            conn.send()

    async def connect_again() -> None:
        """After the server closed a connection: a new one, retried while the run lasts."""
        while load.phase < 2 and not load.exhausted():
            try:
                await connect(start=True)
                return
            except OSError:
                load.conn_errors += 1
                await asyncio.sleep(0.1)

    def reconnect() -> None:
        task = loop.create_task(connect_again())
        pending.add(task)
        task.add_done_callback(pending.discard)

    for _ in range(int(spec["concurrency"])):
        for attempt in range(3):  # a full accept queue refuses; count it, try again
            try:
                await connect(start=False)
                break
            except OSError:
                load.conn_errors += 1
                await asyncio.sleep(0.05 * (attempt + 1))
    if spec.get("go"):
        await _go(spec["host"], int(spec["port"]), str(spec["go"]).encode("latin-1"))
    if total:
        load.phase = 1  # a crowd: every answer counts
    load.t_start = t0 = time.perf_counter()
    for conn in conns:  # all at once: a flash crowd
        conn.send()
    if total:
        with suppress(TimeoutError):
            await asyncio.wait_for(load.drained.wait(), timeout=float(spec["seconds"]))
        load.phase, t1 = 2, time.perf_counter()
    else:
        await asyncio.sleep(float(spec["warmup"]))
        load.phase, t0 = 1, time.perf_counter()
        await asyncio.sleep(float(spec["seconds"]))
        load.phase, t1 = 2, time.perf_counter()
        if load.inflight > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(load.drained.wait(), timeout=30)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    for task in list(pending):
        task.cancel()
    elapsed = t1 - t0
    count = sum(load.measured.values())

    def since_start(t: float) -> float | None:
        return round((t - load.t_start) * 1000, 1) if t else None

    answering = load.last_answer - load.t_start if load.last_answer else 0.0
    return {
        "seconds": round(elapsed, 3),
        "requests": count,
        "rps": round(count / elapsed, 1),
        "statuses": dict(load.measured.most_common()),
        "statuses_all": dict(load.everything.most_common()),
        "latency_ms": latency_summary(load.latencies),
        "created_all": load.everything["201"],
        "last_201_ms": since_start(load.last_201),
        "first_answer_ms": since_start(load.first_answer),
        "last_answer_ms": since_start(load.last_answer),
        "created_timeline": created_timeline(load, since_start),
        # a crowd's rate: every answer over the time from the first send to the last answer
        "answers_per_s": round(sum(load.everything.values()) / answering, 1) if answering else 0,
        "connections": len(conns),
        "persons": load.next_n,
        "conn_errors": load.conn_errors,
        "abandoned": load.inflight,
        "cpu_s": round(time.process_time(), 3),
    }


def main() -> int:
    """Read a spec as JSON on stdin, run it, print the result as one JSON line.

    The spec: `host`, `port`, `token` (API key), `concurrency`, `warmup` and `seconds`, and
    `kind`: "get" with `paths`, or "book" with `office_id`, `service_id`, `slots` ([date,
    start] pairs), `tag` and `first_person` (see `person`). A crowd adds `total` (requests
    in all; `seconds` is then its time limit) and may add `go` (a raw request sent first)."""
    return child_main(_drive)


if __name__ == "__main__":
    sys.exit(main())
