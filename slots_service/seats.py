"""Seats at the Redis gate around Postgres's decision: the take, its compensation, the refills
of counters Redis lost, and the give-back after a booking left `booked`.

Redis only gates: whatever it answers, the booking statement in Postgres decides, and every
path here stays correct when Redis lost data, restarted or is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import asyncpg

from . import errors
from .clock import Clock
from .counters import Attempts, Counters, Gate, Once
from .db import connection, queries

log = logging.getLogger(__name__)

# A day's counters are kept this long after the day itself, however late a reconcile runs.
_COUNTERS_KEPT_AFTER_DAY = timedelta(days=2)
_COUNTERS_MIN_TTL = timedelta(hours=1)


class Released(NamedTuple):
    """Seats a booking that left `booked` freed in Postgres: what the gate counts again after
    the commit (fewer than its party while an admin kept the window over capacity)."""

    office_id: str
    day: date
    start: str
    seats: int

    def less(self, taken: int) -> Released:
        """What the gate gets back once the waitlist took `taken` seats of the window."""
        return self._replace(seats=self.seats - taken)


async def release(conn: asyncpg.Connection, booking: asyncpg.Record) -> Released:
    """In the transaction of a booking leaving its window (a row of `booking_rows`): the seats
    back in Postgres."""
    freed = await conn.fetchval(
        queries["release_seats"], booking["window_id"], booking["party_size"]
    )
    day, start = booking["day"], booking["start_time"].strftime("%H:%M")
    return Released(booking["office_id"], day, start, int(freed))


def counters_ttl(day: date, now: datetime) -> int:
    """Seconds a day's Redis counters may live, counted from now.

    Redis expires keys by its own (real) clock, the rules run on the service clock, which a
    test clock may put a year away from it. So the service clock only says how much longer
    the day matters (until two days after it), and Redis is given that as a duration from
    its own now: never an instant of one clock enforced by the other. A day already past
    still gets an hour, so a counter is never written dead."""
    until = datetime.combine(day, time(0), tzinfo=UTC) + _COUNTERS_KEPT_AFTER_DAY
    return int(max(until - now, _COUNTERS_MIN_TTL).total_seconds())


class Seats:
    """The gate of one process: its Redis counters, and the refills it runs in the background
    (one at a time per office-day, however many requests noticed the loss)."""

    def __init__(self, counters: Counters, pool: asyncpg.Pool, clock: Clock) -> None:
        self.counters = counters
        self._pool = pool
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()
        self._refilling: set[tuple[str, date]] = set()

    async def take(
        self,
        office_id: str,
        day: date,
        start: str,
        seats: int,
        attempts: Attempts | None = None,
        once: Once | None = None,
    ) -> Gate:
        """Ask the gate first; with `attempts`, the person's try is counted in the same round
        trip (RateLimited when they tried too often); with `once`, the request's
        Idempotency-Key is marked in it (DUPLICATE: a request of the key passed before)."""
        return await self.counters.take(office_id, day, start, seats, attempts, once)

    def settle(self, gate: Gate, office_id: str, day: date) -> None:
        """Once Postgres answered, whatever it said: counters the gate found lost are refilled."""
        if gate is Gate.MISSING:
            self.refill_soon(office_id, day)

    async def compensate(
        self, gate: Gate, exc: BaseException, office_id: str, day: date, start: str, seats: int
    ) -> None:
        """Seats the gate took for a request that booked nothing go back to Redis, unless
        Postgres, the arbiter, said the window is full: then Redis counted seats that are not
        there, and keeping the take brings its counter down to the truth."""
        if not isinstance(exc, errors.SlotFull):
            await self.untake(gate, office_id, day, start, seats)

    async def untake(self, gate: Gate, office_id: str, day: date, start: str, seats: int) -> None:
        """A take that booked nothing: its seats go back to the gate."""
        if gate is Gate.TAKEN:
            await self.counters.give(office_id, day, start, seats)

    async def give_back(self, released: Iterable[Released]) -> None:
        """After commit: the seats bookings freed go back to the gate, less those the waitlist
        took in the same transaction (negative: it took seats that were free before)."""
        for seats in released:
            if seats.seats != 0:
                await self.counters.give(seats.office_id, seats.day, seats.start, seats.seats)

    async def fill(
        self, office_id: str, day: date, replace: bool, conn: asyncpg.Connection | None = None
    ) -> int:
        """Copy a day's seats remaining from Postgres into Redis (replace: reconcile); returns
        the windows that were absent or drifted. With `conn`, as that transaction sees them."""
        if conn is not None:
            rows = await conn.fetch(queries["day_remaining"], office_id, day)
        else:
            async with connection(self._pool) as pooled:
                rows = await pooled.fetch(queries["day_remaining"], office_id, day)
        remaining = {r["start"]: r["remaining"] for r in rows}
        ttl = counters_ttl(day, await self._clock.now())
        return await self.counters.fill(office_id, day, remaining, ttl, replace)

    def refill_soon(self, office_id: str, day: date) -> None:
        """Redis lost a day's counters: fill them from Postgres in the background."""
        if (office_id, day) in self._refilling:
            return
        self._refilling.add((office_id, day))
        self._spawn(self._refill_quietly(office_id, day))

    async def _refill_quietly(self, office_id: str, day: date) -> None:
        try:
            await self.fill(office_id, day, replace=False)
        except Exception as exc:  # the reconcile job will do it
            log.warning("refilling redis counters failed: %s", type(exc).__qualname__)
        finally:
            self._refilling.discard((office_id, day))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def finish_background(self) -> None:
        """At shutdown: let the refills requests started end before the pools close."""
        await asyncio.gather(*self._background, return_exceptions=True)
