"""The process-wide resources every request and job shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from .catalog import Catalog, Office
from .clock import Clock, RealClock, TestClock
from .config import Settings
from .counters import Counters
from .db import connection, create_pool
from .horizon import days_between, horizon, open_day


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    counters: Counters
    catalog: Catalog
    clock: Clock
    # (office, day) pairs known to be opened already; a day, once opened, stays opened.
    opened: set[tuple[str, date]] = field(default_factory=set)

    @property
    def tz(self) -> ZoneInfo:
        """The zone of instants that belong to no office."""
        return ZoneInfo(self.settings.timezone)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        pool = await create_pool(settings.database_url, settings.db_pool_size)
        clock: Clock = TestClock(pool) if settings.test_clock else RealClock()
        counters = Counters(settings.redis_url, settings.redis_timeout_s)
        return cls(settings, pool, counters, Catalog(pool), clock)

    async def close(self) -> None:
        await self.counters.close()
        await self.pool.close()

    async def ensure_opened(self, office: Office, days: list[date], now: datetime) -> None:
        """Plan any of these days not opened yet (the horizon job may not have run)."""
        todo = [d for d in days if (office.id, d) not in self.opened]
        if not todo:
            return
        async with connection(self.pool) as conn:
            for day in todo:
                async with conn.transaction():
                    await open_day(
                        conn, office.id, office.tz, office.hours, office.window_minutes, day, now
                    )
                self.opened.add((office.id, day))

    async def ensure_horizon(self, office: Office, now: datetime) -> tuple[date, date]:
        first, last = horizon(now, office.tz, self.settings)
        await self.ensure_opened(office, days_between(first, last), now)
        return first, last
