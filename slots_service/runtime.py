"""The process-wide resources every request and job shares, built once at start-up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from .catalog import Catalog, Office
from .clock import Clock, RealClock, TestClock
from .config import Settings
from .counters import Counters
from .db import connection, create_pool, queries
from .horizon import counters_ttl, days_between, horizon, open_day


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    counters: Counters
    catalog: Catalog
    clock: Clock
    # (office, day) pairs known to be opened already; a day, once opened, stays opened.
    opened: set[tuple[str, date]] = field(default_factory=set)
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def tz(self) -> ZoneInfo:
        """The zone of instants that belong to no office."""
        return ZoneInfo(self.settings.timezone)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        counters = Counters(settings.redis_url, settings.redis_timeout_s)
        try:
            await counters.start()
            await counters.check_eviction(settings.redis_allow_eviction)
        except BaseException:
            await counters.close()
            raise
        pool = await create_pool(settings.database_url, settings.db_pool_size)
        clock: Clock = TestClock(pool) if settings.test_clock else RealClock()
        return cls(settings, pool, counters, Catalog(pool), clock)

    async def close(self) -> None:
        await self.catalog.close()
        await self.counters.close()
        await self.pool.close()

    async def ensure_opened(
        self, office: Office, days: list[date], now: datetime
    ) -> tuple[int, int]:
        """Plan any of these days not opened yet here and count their seats in Redis; one
        opener per process at a time, so a crowd on a new day plans it once. Returns the
        days that got windows and the windows created."""
        opened_days = created = 0
        for day in days:
            if (office.id, day) in self.opened:
                continue
            async with self._opening:
                if (office.id, day) in self.opened:
                    continue
                async with connection(self.pool) as conn, conn.transaction():
                    made = await open_day(
                        conn, office.id, office.tz, office.hours, office.window_minutes, day, now
                    )
                if made:
                    await self.fill_counters(office.id, day, replace=False)
                    opened_days += 1
                self.opened.add((office.id, day))
                created += made
        return opened_days, created

    async def fill_counters(self, office_id: str, day: date, replace: bool) -> int:
        """Copy a day's seats remaining from Postgres into Redis (replace: reconcile)."""
        async with connection(self.pool) as conn:
            rows = await conn.fetch(queries["day_remaining"], office_id, day)
        remaining = {r["start"]: r["remaining"] for r in rows}
        ttl = counters_ttl(day, await self.clock.now())
        return await self.counters.fill(office_id, day, remaining, ttl, replace)

    async def ensure_horizon(self, office: Office, now: datetime) -> tuple[date, date]:
        first, last = horizon(now, office.tz, self.settings)
        await self.ensure_opened(office, days_between(first, last), now)
        return first, last
