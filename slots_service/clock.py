"""The one clock every rule, job and timestamp reads: real time, or the shared test clock."""

from __future__ import annotations

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

    async def now(self) -> datetime:
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
