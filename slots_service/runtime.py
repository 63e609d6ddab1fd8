"""The process-wide resources every request and job shares, built once at start-up: a plain
holder, no rules."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg

from .book_params import book_args
from .catalog import Catalog
from .clock import Clock, RealClock, TestClock
from .config import Settings
from .counters import Counters
from .db import create_pool, queries
from .group_commit import GroupCommit
from .horizon import Days
from .seats import Seats
from .statistics import Statistics


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    catalog: Catalog
    clock: Clock
    seats: Seats
    days: Days
    bookings: GroupCommit  # the plain bookings' `book` statements, decided in batches
    statistics: Statistics  # the planner's statistics kept up with the tables' growth

    @property
    def tz(self) -> ZoneInfo:
        """The zone of instants that belong to no office."""
        return ZoneInfo(self.settings.timezone)

    @property
    def counters(self) -> Counters:
        return self.seats.counters

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        counters = Counters(settings.redis_url, settings.redis_timeout_s)
        try:
            await counters.start()
            await counters.check_eviction(settings.redis_allow_eviction)
        except BaseException:
            await counters.close()
            raise
        # `book` with no bookings: prepared on each connection before a crowd needs it, and
        # open before it comes the connections its batches and two more need (a connection
        # opened under a crowd waits for each of the event loop's long turns: its first batch
        # went ~800 ms after the others)
        pool = await create_pool(
            settings.database_url,
            settings.db_pool_size,
            [(queries["book"], book_args([]))],
            open_at_least=settings.book_batch_in_flight + 2,
        )
        clock: Clock = TestClock(pool) if settings.test_clock else RealClock()
        seats = Seats(counters, pool, clock)
        catalog = Catalog(pool)
        try:
            await catalog.start(settings.database_url)
        except BaseException:
            await pool.close()
            await counters.close()
            raise
        bookings = GroupCommit(
            pool,
            queries["book"],
            settings.book_batch_max,
            settings.book_batch_in_flight,
            book_args,
        )
        statistics = Statistics(pool)
        statistics.start()
        days = Days(pool, seats, settings)
        return cls(settings, pool, catalog, clock, seats, days, bookings, statistics)

    async def close(self) -> None:
        await self.statistics.close()
        await self.bookings.finish()
        await self.seats.finish_background()
        await self.catalog.close()
        await self.counters.close()
        await self.pool.close()
