"""The gate's own Redis connection: EVALSHA of the take script, pipelined, for the booking path.

redis-py spends ~100 µs of CPU per call (pool check-out, command packing, the parser, its
retry wrapper): under a flash crowd that is a third of what a refusal costs. Here one
connection carries every call of the process at once: the calls of one turn of the event loop
are written together, in one send, at the start of the next turn (uvloop's transport would
send each write at once: one system call, and one wake-up of Redis, per call), and replies
come back in order, so the n-th reply belongs to the n-th call. A reply is an integer or a
bulk string (what the gate scripts return) or an error; anything else closes the connection.

Only for `redis://` (TCP, optional user, password and database); TLS, unix sockets and Redis
Cluster keep redis-py. Errors are redis-py's exceptions, so the circuit breaker in
counters.py treats them the same: a refused or lost connection is ConnectionError (every call
in flight on it fails with it), a call unanswered after `timeout_s` TimeoutError (its late
reply is still matched and dropped), an error reply ResponseError (NOSCRIPT included: the
caller then goes through redis-py, which loads the script).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = int | bytes | ResponseError


def fast_target(url: str) -> tuple[str, int, str | None, str | None, int] | None:
    """(host, port, username, password, db) for a plain `redis://` URL, else None."""
    where = urlsplit(url)
    if where.scheme != "redis" or not where.hostname or where.query:
        return None
    path = where.path.strip("/")
    if path and not path.isdigit():
        return None
    user = unquote(where.username) if where.username else None
    password = unquote(where.password) if where.password else None
    return where.hostname, where.port or 6379, user, password, int(path or 0)


def command(*args: str | int | bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class ProtocolFault(Exception):
    """A reply this client does not read (an array, say): the connection is closed."""


def parse(buf: bytearray | bytes, pos: int = 0) -> tuple[Reply, int] | None:
    """One reply at `pos`: (value, position after it), or None while it is incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    if kind == b":":
        return int(line), end + 2
    if kind == b"$":
        size = int(line)
        if size < 0:
            raise ProtocolFault("nil reply")
        stop = end + 2 + size
        if len(buf) < stop + 2:
            return None
        return bytes(buf[end + 2 : stop]), stop + 2
    if kind == b"-":
        return ResponseError(line.decode(errors="replace")), end + 2
    if kind == b"+":
        return line, end + 2
    raise ProtocolFault(f"unexpected reply type {kind!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: deque[asyncio.Future[Reply]] = deque()
        self.buf = bytearray()
        self.lost = False
        self.out: list[bytes] = []  # the commands of this turn of the loop, not yet written

    def flush(self) -> None:
        """Write the commands of this turn of the loop, all in one send."""
        out, self.out = self.out, []
        if not out or self.transport is None or self.lost:
            return  # lost meanwhile: connection_lost failed every call waiting on it
        try:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        except RuntimeError:  # the transport was closed and its loss not yet told: it is lost
            self.transport.abort()
            self.connection_lost(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        try:
            while self.pending:
                found = parse(self.buf, pos)
                if found is None:
                    break
                value, pos = found
                waiter = self.pending.popleft()
                if not waiter.done():  # a call that timed out is no longer waited for
                    waiter.set_result(value)
        except (ProtocolFault, ValueError):
            assert self.transport is not None
            self.transport.abort()
            return
        del self.buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.pending:
            waiter = self.pending.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError("connection to redis lost"))


class GateConnection:
    """One pipelined connection, opened on first use and again after it was lost."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        db: int,
        timeout_s: float,
    ) -> None:
        self._where = (host, port)
        self._hello: list[bytes] = []
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            self._hello.append(command(*auth))
        if db:
            self._hello.append(command("SELECT", db))
        self._timeout_s = timeout_s
        self._conn: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None

    async def _connection(self) -> _Protocol:
        """The open connection, or the one being opened. A crowd opens one connection, not one
        each, and every caller that waited for it goes on at once when it is open (a lock
        would hand the connection to its waiters one per turn of the event loop: the first
        crowd on a fresh process, or after Redis came back, waited seconds for the gate)."""
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
            self._opening.add_done_callback(_retrieved)
        # shielded: a caller that gives up does not stop the opening the others wait for
        return await asyncio.shield(self._opening)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_s):
                _, conn = await loop.create_connection(_Protocol, *self._where)
                for hello in self._hello:
                    reply = await self._send(conn, hello)
                    if isinstance(reply, ResponseError):
                        if conn.transport is not None:
                            conn.transport.close()
                        raise RedisConnectionError(f"redis refused the connection: {reply}")
        except TimeoutError:
            raise RedisTimeoutError("connecting to redis timed out") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc.strerror}") from None
        self._conn = conn
        return conn

    def _send(self, conn: _Protocol, data: bytes) -> asyncio.Future[Reply]:
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        conn.pending.append(waiter)
        if not conn.out:
            asyncio.get_running_loop().call_soon(conn.flush)
        conn.out.append(data)
        return waiter

    async def call(self, data: bytes) -> Reply:
        """Send one command (RESP bytes) and wait for its reply, at most `timeout_s`."""
        conn = await self._connection()
        waiter = self._send(conn, data)
        timer = asyncio.get_running_loop().call_later(self._timeout_s, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def close(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()


def _expire(waiter: asyncio.Future[Reply]) -> None:
    if not waiter.done():
        waiter.set_exception(RedisTimeoutError("redis did not answer in time"))


def _retrieved(opening: asyncio.Future[_Protocol]) -> None:
    """An opening that failed after all its callers gave up is not an error to log: the next
    caller opens again."""
    if not opening.cancelled():
        opening.exception()
