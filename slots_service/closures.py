"""What changes an office-day: holidays and make-up workdays, office closures, capacity.

Closing a day (a closure, or a holiday for every office) marks its windows closed and
cancels the bookings there as the office's doing, each with a `booking.cancelled` event.
Reopening clears the mark; the cancelled bookings stay cancelled.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg

from . import errors
from .booking import cancel_locked, give_back
from .catalog import Office
from .db import connection, in_transaction, queries
from .horizon import calendar_mark, is_closed, open_day
from .models import CalendarIn, CalendarOut, Holiday, WindowOut
from .render import hhmm
from .runtime import Runtime


async def _settle_day(
    conn: asyncpg.Connection, rt: Runtime, office: Office, day: date, reason: str, now: datetime
) -> list[asyncpg.Record]:
    """Bring one opened office-day in line with its closure and the calendar now.

    Returns the bookings cancelled (their seats go back to Redis after commit)."""
    if not await conn.fetchval(queries["day_is_opened"], office.id, day):
        # Not planned yet, so nothing is booked: open_day applies the closure and the calendar
        # when the day enters the horizon, with the hours of that moment.
        return []
    await open_day(conn, office.id, office.tz, office.hours, office.window_minutes, day, now)
    mark = await calendar_mark(conn, day)
    by_office = bool(await conn.fetchval(queries["closure_exists"], office.id, day))
    planned_as = await conn.fetchval(queries["planned_as"], office.id, day)
    closed = is_closed(day, mark, by_office, planned_as)
    await conn.execute(queries["set_day_closed"], office.id, day, closed)
    cancelled: list[asyncpg.Record] = []
    if closed:
        for (booking_id,) in await conn.fetch(queries["booked_on_day"], office.id, day):
            row = await conn.fetchrow(queries["booking_for_update"], booking_id)
            assert row is not None
            await cancel_locked(conn, rt, row, "office", reason, now)
            cancelled.append(row)
    return cancelled


async def _after(rt: Runtime, office_id: str, day: date, cancelled: list[asyncpg.Record]) -> None:
    await give_back(rt, cancelled)
    await rt.fill_counters(office_id, day, replace=True)


async def _settle_everywhere(rt: Runtime, day: date, reason: str, now: datetime) -> int:
    """Apply a calendar change to every office that has opened the day."""
    async with connection(rt.pool) as conn:
        office_ids = [r["office_id"] for r in await conn.fetch(queries["opened_offices_on"], day)]
    total = 0
    for office_id in office_ids:
        office = await rt.catalog.office(office_id)

        async def work(conn: asyncpg.Connection, office: Office = office) -> list[asyncpg.Record]:
            return await _settle_day(conn, rt, office, day, reason, now)

        cancelled = await in_transaction(rt.pool, work)
        await _after(rt, office.id, day, cancelled)
        total += len(cancelled)
    return total


async def put_calendar(rt: Runtime, day: date, body: CalendarIn, now: datetime) -> CalendarOut:
    if isinstance(body, Holiday):
        kind, as_weekday = "holiday", None
    else:
        kind, as_weekday = "workday", body.as_
    async with connection(rt.pool) as conn:
        await conn.execute(queries["calendar_put"], day, kind, as_weekday, body.name)
    await _settle_everywhere(rt, day, body.name or kind, now)
    return CalendarOut(date=day, kind=kind, name=body.name, as_=as_weekday)


async def delete_calendar(rt: Runtime, day: date, now: datetime) -> None:
    async with connection(rt.pool) as conn:
        found = await conn.fetchval(queries["calendar_delete"], day)
    if found is None:
        raise errors.NotFound(f"{day} has no calendar mark")
    await _settle_everywhere(rt, day, "calendar", now)


async def list_calendar(rt: Runtime) -> list[CalendarOut]:
    async with connection(rt.pool) as conn:
        rows = await conn.fetch(queries["calendar_all"])
    return [
        CalendarOut(date=r["day"], kind=r["kind"], name=r["name"], as_=r["as_weekday"])
        for r in rows
    ]


async def put_closure(rt: Runtime, office: Office, day: date, reason: str, now: datetime) -> int:
    """Close one office for a day; returns how many bookings were cancelled."""

    async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        await conn.execute(queries["closure_put"], office.id, day, reason, now)
        return await _settle_day(conn, rt, office, day, reason, now)

    cancelled = await in_transaction(rt.pool, work)
    await _after(rt, office.id, day, cancelled)
    return len(cancelled)


async def delete_closure(rt: Runtime, office: Office, day: date, now: datetime) -> None:
    async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        if await conn.fetchval(queries["closure_delete"], office.id, day) is None:
            raise errors.NotFound(f"{office.id} is not closed on {day}")
        return await _settle_day(conn, rt, office, day, "reopened", now)

    cancelled = await in_transaction(rt.pool, work)
    await _after(rt, office.id, day, cancelled)


async def set_capacity(
    rt: Runtime, office: Office, day: date, start: str, capacity: int, now: datetime
) -> WindowOut:
    """Change one window's seats; below the seats sold it only stops new bookings."""
    from .booking import parse_start

    await rt.ensure_horizon(office, now)
    async with connection(rt.pool) as conn:
        row = await conn.fetchrow(
            queries["set_capacity"], office.id, day, parse_start(start), capacity
        )
    if row is None:
        raise errors.NotFound(f"{office.id} has no window at {start} on {day}")
    await rt.fill_counters(office.id, day, replace=True)
    return WindowOut(
        start=hhmm(row["start_time"]),
        end=hhmm(row["end_time"]),
        capacity=row["capacity"],
        remaining=max(0, row["capacity"] - row["booked"]),
    )
