"""A booking leaving its window: cancelled, or moved to another (reschedule).

The seats it frees go first to the people waiting for them, in the same transaction
(`waitlist.offer`, the window's row still locked by the release); after the commit the gate
gets back only the seats nobody waiting took.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from . import booking, errors, events, people, waitlist
from .booking import cancel_deadline, check_bookable, parse_start
from .config import Settings
from .counters import Gate
from .db import connection, in_transaction, queries
from .models import BookingOut, CancelIn, RescheduleIn
from .render import booking as render_booking
from .render import bookings as render_bookings
from .render import instant
from .runtime import Runtime
from .seats import Released, release


async def to_waitlist(
    conn: asyncpg.Connection, rt: Runtime, row: asyncpg.Record, freed: Released, now: datetime
) -> Released:
    """In the transaction that freed a booking's seats (its window's row still locked by the
    release), once the change's own events are written: the seats offered to the waitlist
    first; returns what the gate gets back after commit."""
    office = await rt.catalog.office(row["office_id"])
    taken = await waitlist.offer(conn, rt, office, row["day"], row["start_time"], now)
    return freed.less(taken)


async def cancel_locked(
    conn: asyncpg.Connection,
    rt: Runtime,
    row: asyncpg.Record,
    by: str,
    reason: str,
    now: datetime,
) -> tuple[BookingOut, Released]:
    """Cancel a locked `booked` booking: status, seats, event, and any block it earns; returns
    the booking and the seats it freed."""
    await conn.execute(queries["set_cancelled"], row["id"], now, by, reason)
    freed = await release(conn, row)
    out = await events.emit(conn, rt, "booking.cancelled", row["id"], now)
    if by == "person":
        until = await people.block_after_cancellations(conn, row["person_id"], now, rt.settings)
        if until is not None:
            await events.emit_blocked(conn, rt, out, until, now)
    return out, await to_waitlist(conn, rt, row, freed, now)


async def cancel(rt: Runtime, booking_id: str, body: CancelIn, now: datetime) -> BookingOut:
    async def work(conn: asyncpg.Connection) -> tuple[BookingOut, Released | None]:
        row = await booking.locked(conn, booking_id)
        if row["status"] == "cancelled":
            return (await render_bookings(rt.catalog, [row]))[0], None
        if row["status"] != "booked":
            raise errors.InvalidState(f"a {row['status']} booking cannot be cancelled")
        if body.by == "person":
            deadline = row["cancel_deadline"]
            if deadline is not None and now > deadline:
                office = await rt.catalog.office(row["office_id"])
                raise errors.CancelCutoffPassed(instant(deadline, office.tz) or "")
        return await cancel_locked(conn, rt, row, body.by, body.reason, now)

    return await _leave_booked(rt, work)


async def _leave_booked(
    rt: Runtime,
    work: Callable[[asyncpg.Connection], Awaitable[tuple[BookingOut, Released | None]]],
) -> BookingOut:
    """Run a transition out of `booked`; after commit, its seats go back to the gate."""
    out, released = await in_transaction(rt.pool, work)
    if released is not None:
        await rt.seats.give_back([released])
    return out


def _check_reschedules(settings: Settings, row: asyncpg.Record) -> None:
    if row["reschedules"] >= settings.max_reschedules:
        raise errors.RescheduleLimitReached(
            f"a booking may be rescheduled at most {settings.max_reschedules} times"
        )


async def reschedule(rt: Runtime, booking_id: str, body: RescheduleIn, now: datetime) -> BookingOut:
    """Move a booking to another window of its office and service, atomically."""
    async with connection(rt.pool) as conn:
        current = await conn.fetchrow(queries["booking_by_id"], booking_id)
    if current is None:
        raise errors.NotFound(f"no booking {booking_id!r}")
    if current["status"] != "booked":
        raise errors.InvalidState(f"a {current['status']} booking cannot be rescheduled")
    _check_reschedules(rt.settings, current)
    office = await rt.catalog.office(current["office_id"])
    service = await rt.catalog.service(current["service_id"])
    start = parse_start(body.start)
    party = current["party_size"]
    check_bookable(rt.settings, office, service, body.date, start, party, now)
    if (body.date, start) == (current["day"], current["start_time"]):
        return render_booking(current, office.tz)
    draw_at = await rt.days.draw_pending(office, body.date, now)
    if draw_at is not None:
        raise errors.DrawPending(instant(draw_at, office.tz) or "")
    await rt.days.ensure_opened(office, [body.date], now)

    gate = await rt.seats.take(office.id, body.date, body.start, party)
    if gate is Gate.FULL:
        raise errors.SlotFull()

    async def work(conn: asyncpg.Connection) -> tuple[BookingOut, Released]:
        row = await booking.locked(conn, booking_id)
        if row["status"] != "booked":
            raise errors.InvalidState(f"a {row['status']} booking cannot be rescheduled")
        _check_reschedules(rt.settings, row)  # again under the lock: two moves at once
        window = await conn.fetchrow(queries["window_at"], office.id, body.date, start)
        if window is None:
            raise errors.NotBookable(f"no window starts at {body.start} on {body.date}")
        if window["closed"]:
            raise errors.NotBookable("the office is closed that day")
        if await conn.fetchval(queries["take_seats"], window["id"], party) is None:
            raise errors.SlotFull()
        freed = await release(conn, row)
        deadline = cancel_deadline(service, body.date, window["starts_at"], office)
        await conn.execute(queries["set_window"], row["id"], window["id"], body.date, deadline)
        out = await events.emit(conn, rt, "booking.rescheduled", row["id"], now)
        return out, await to_waitlist(conn, rt, row, freed, now)

    try:
        out, old = await in_transaction(rt.pool, work)
    except BaseException as exc:
        await rt.seats.compensate(gate, exc, office.id, body.date, body.start, party)
        raise
    finally:
        rt.seats.settle(gate, office.id, body.date)
    await rt.seats.give_back([old])
    return out
