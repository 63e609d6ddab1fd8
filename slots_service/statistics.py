"""The planner's statistics of the booking path's tables, kept up with their growth.

Postgres plans a prepared statement once (its generic plan) and keeps the plan until the
statistics of a table it reads change. A table counted while it was nearly empty (a young
database: autovacuum analyzes a table at its first 50 rows) is planned as if it stayed so:
`book` then reads people and bookings whole, or walks a whole index, and every booking costs
more than the one before while the table grows (measured: 0.17 ms of Postgres per booking on
a fresh database, 1.7 -> 3.5 ms within 12 s after an ANALYZE of nearly empty tables).
Autovacuum counts them again in time, but only at its next round (autovacuum_naptime, a minute
by default), and the first release of a young database fills them faster than that.

So each process looks every 2 seconds (one query on pg_class) for a table of the booking path
now 4 times the pages its statistics were counted at, and ANALYZEs it: its new statistics make
every cached plan that reads it planned again, by index. An advisory lock held by the
transaction lets one process of a deployment do it at a time. Only tables the database user
owns (may ANALYZE) are looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from . import metrics
from .db import queries

log = logging.getLogger(__name__)

# The tables kept counted: those queries.sql has an `analyze_<table>` for.
TABLES = tuple(name.removeprefix("analyze_") for name in queries if name.startswith("analyze_"))
EVERY_S = 2.0
_LOCK = 0x57A7_5000


async def refresh(pool: asyncpg.Pool) -> list[str]:
    """ANALYZE the tables of TABLES that outgrew their statistics; the ones it did."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(queries["outgrown_statistics"], list(TABLES))
        done = []
        for name in (row["name"] for row in rows):
            async with conn.transaction():
                if not await conn.fetchval(queries["try_xact_lock"], _LOCK):
                    continue  # another process is counting: it will do this one
                await conn.execute(queries[f"analyze_{name}"])
            done.append(name)
            metrics.statistics_refreshed.labels(name).inc()
    if done:
        log.info("planner statistics counted again: %s", ", ".join(done))
    return done


class Statistics:
    """`refresh` every EVERY_S seconds in the background, from start() to close()."""

    def __init__(self, pool: asyncpg.Pool, every_s: float = EVERY_S) -> None:
        self._pool = pool
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await refresh(self._pool)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # the database is away: the next round tries again
                log.warning("planner statistics not refreshed (%s)", type(exc).__name__)
