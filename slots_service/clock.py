"""The one clock every rule, job and timestamp reads: real time, or the shared test clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

import asyncpg

from .db import connection, queries


class Clock(Protocol):
    async def now(self) -> datetime: ...


class RealClock:
    async def now(self) -> datetime:
        return datetime.now(UTC)


class TestClock:
    """Like Stripe's test clocks: a frozen instant kept in Postgres, so every API worker and
    the scheduler see the same time at once. No row means real time."""

    __test__ = False  # not a pytest class

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # Callers that arrived since the last read began share the next one: every read
        # begins after each of its callers arrived, so each sees every `set` committed
        # before it asked, and a crowd costs one query per round trip, not one each.
        self._next: asyncio.Future[datetime] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def now(self) -> datetime:
        waiter = self._next
        if waiter is None:
            waiter = self._next = asyncio.get_running_loop().create_future()
            waiter.add_done_callback(_retrieved)
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_for_waiters())
        return await asyncio.shield(waiter)

    async def _read_for_waiters(self) -> None:
        try:
            while (waiter := self._next) is not None:
                self._next = None  # who comes now waits for the next read
                try:
                    value = await self._read()
                except Exception as exc:
                    waiter.set_exception(exc)
                except BaseException:  # cancelled (shutdown): so are those who came since
                    waiter.cancel()
                    if (later := self._next) is not None:
                        self._next = None
                        later.cancel()
                    raise
                else:
                    waiter.set_result(value)
        finally:
            self._reader = None

    async def _read(self) -> datetime:
        async with connection(self._pool) as conn:
            value = await conn.fetchval(queries["clock_now"])
        if value is None:
            return datetime.now(UTC)
        assert isinstance(value, datetime)
        return value

    async def set(self, instant: datetime) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(queries["clock_set"], instant)

    async def reset(self) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(queries["clock_reset"])


def _retrieved(waiter: asyncio.Future[datetime]) -> None:
    """A read that failed while none of its callers waited any more is not an error to log."""
    if not waiter.cancelled():
        waiter.exception()
