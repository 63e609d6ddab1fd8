"""What changes an office-day: holidays and make-up workdays, office closures, capacity.

Closing a day (a closure, or a holiday for every office) marks its windows closed and
cancels the bookings there as the office's doing, each with a `booking.cancelled` event.
Reopening clears the mark; the cancelled bookings stay cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime

import asyncpg

from . import errors, waitlist
from .booking import parse_start
from .catalog import Office
from .db import connection, in_transaction, one, queries
from .horizon import calendar_mark, is_closed, open_day
from .leaving import cancel_locked
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
        for row in await conn.fetch(queries["booked_on_day"], office.id, day):
            await cancel_locked(conn, rt, row, "office", reason, now)
            cancelled.append(row)
    else:  # a reopened day's seats go to the people waiting first
        await waitlist.offer_day(conn, rt, office, day, now)
    return cancelled


ChangeDay = Callable[[asyncpg.Connection], Awaitable[None]]


async def _change_day(
    rt: Runtime,
    day: date,
    reason: str,
    now: datetime,
    change: ChangeDay,
    offices: list[Office] | None = None,
) -> int:
    """Apply `change` and bring the day of `offices` (default: every office that opened it)
    in line with it, all in one transaction; then Redis counts those days again.
    Returns how many bookings the change cancelled."""

    async def work(conn: asyncpg.Connection) -> dict[str, int]:
        await change(conn)
        if offices is None:
            rows = await conn.fetch(queries["opened_offices_on"], day)
            found = [await rt.catalog.office(r["office_id"]) for r in rows]
        else:
            found = offices
        return {o.id: len(await _settle_day(conn, rt, o, day, reason, now)) for o in found}

    cancelled = await in_transaction(rt.pool, work)
    for office_id in cancelled:  # the closed windows' counters drop, freed seats come back
        await rt.seats.fill(office_id, day, replace=True)
    return sum(cancelled.values())


async def put_calendar(rt: Runtime, day: date, body: CalendarIn, now: datetime) -> CalendarOut:
    if isinstance(body, Holiday):
        kind, as_weekday = "holiday", None
    else:
        kind, as_weekday = "workday", body.as_

    async def change(conn: asyncpg.Connection) -> None:
        await conn.execute(queries["calendar_put"], day, kind, as_weekday, body.name)

    await _change_day(rt, day, body.name or kind, now, change)
    return CalendarOut(date=day, kind=kind, name=body.name, as_=as_weekday)


async def delete_calendar(rt: Runtime, day: date, now: datetime) -> None:
    async def change(conn: asyncpg.Connection) -> None:
        if await conn.fetchval(queries["calendar_delete"], day) is None:
            raise errors.NotFound(f"{day} has no calendar mark")

    await _change_day(rt, day, "make-up workday withdrawn", now, change)


async def list_calendar(rt: Runtime) -> list[CalendarOut]:
    async with connection(rt.pool) as conn:
        rows = await conn.fetch(queries["calendar_all"])
    return [
        CalendarOut(date=r["day"], kind=r["kind"], name=r["name"], as_=r["as_weekday"])
        for r in rows
    ]


async def put_closure(rt: Runtime, office: Office, day: date, reason: str, now: datetime) -> int:
    """Close one office for a day; returns how many bookings were cancelled."""

    async def change(conn: asyncpg.Connection) -> None:
        await conn.execute(queries["closure_put"], office.id, day, reason, now)

    return await _change_day(rt, day, reason, now, change, [office])


async def delete_closure(rt: Runtime, office: Office, day: date, now: datetime) -> None:
    async def change(conn: asyncpg.Connection) -> None:
        if await conn.fetchval(queries["closure_delete"], office.id, day) is None:
            raise errors.NotFound(f"{office.id} is not closed on {day}")

    await _change_day(rt, day, "reopened", now, change, [office])


async def set_capacity(
    rt: Runtime, office: Office, day: date, start: str, capacity: int, now: datetime
) -> WindowOut:
    """Change one window's seats; below the seats sold it only stops new bookings."""
    await rt.days.ensure_horizon(office, now)

    async def work(conn: asyncpg.Connection) -> asyncpg.Record:
        row = await conn.fetchrow(
            queries["set_capacity"], office.id, day, parse_start(start), capacity
        )
        if row is None:
            raise errors.NotFound(f"{office.id} has no window at {start} on {day}")
        # seats a raise frees go to the people waiting first, with the window still locked
        if await waitlist.offer(conn, rt, office, day, row["start_time"], now):
            row = await one(conn, "window_at", office.id, day, row["start_time"])
        return row

    row = await in_transaction(rt.pool, work)
    await rt.seats.fill(office.id, day, replace=True)
    return WindowOut(
        start=hhmm(row["start_time"]),
        end=hhmm(row["end_time"]),
        capacity=row["capacity"],
        remaining=max(0, row["capacity"] - row["booked"]),
    )
