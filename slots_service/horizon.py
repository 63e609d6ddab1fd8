"""Calendar, opening hours -> windows, and the rolling booking horizon.

A day is *opened* once: its windows are planned from the office's hours of that moment and
then kept, whatever later happens to the hours. Holidays and closures do not remove windows;
they mark them closed, so that lifting them needs no re-planning.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from .catalog import Office
from .config import Settings
from .db import connection, queries
from .models import CLOCK_YEARS, WEEKDAYS, HoursRange, Weekday, minutes
from .seats import Seats


@dataclass(frozen=True)
class CalendarMark:
    kind: str  # holiday | workday
    as_weekday: Weekday | None
    name: str


@dataclass(frozen=True)
class PlannedWindow:
    start: time
    end: time
    starts_at: datetime
    ends_at: datetime
    capacity: int


def local_today(now: datetime, tz: ZoneInfo) -> date:
    return now.astimezone(tz).date()


def horizon(now: datetime, tz: ZoneInfo, settings: Settings) -> tuple[date, date]:
    """First and last bookable date. The newest day opens at `horizon_opens_at` local time."""
    local = now.astimezone(tz)
    today = local.date()
    last = today + timedelta(days=settings.horizon_days)
    if local.hour * 60 + local.minute < minutes(settings.horizon_opens_at):
        last -= timedelta(days=1)
    return today + timedelta(days=settings.horizon_first_day), last


def next_to_open(now: datetime, tz: ZoneInfo, settings: Settings) -> tuple[date, datetime]:
    """The day that enters the horizon next, and the instant it does."""
    local = now.astimezone(tz)
    hh, mm = (int(x) for x in settings.horizon_opens_at.split(":"))
    opens = datetime.combine(local.date(), time(hh, mm), tz)
    if local >= opens:
        opens = datetime.combine(local.date() + timedelta(days=1), time(hh, mm), tz)
    return horizon(now, tz, settings)[1] + timedelta(days=1), opens


def opens_at(day: date, tz: ZoneInfo, settings: Settings) -> datetime:
    """The instant a day enters the horizon (00:00 office-local, 14 days before, by default)."""
    hh, mm = (int(x) for x in settings.horizon_opens_at.split(":"))
    return datetime.combine(day - timedelta(days=settings.horizon_days), time(hh, mm), tz)


def entries_open_at(office: Office, day: date, settings: Settings) -> datetime:
    """When a lottery office starts taking entries for a day: `entries_open` office-local on
    the calendar day before the day's opening instant."""
    lottery = office.lottery
    entries_open = lottery.entries_open if lottery is not None else "18:00"
    hh, mm = (int(x) for x in entries_open.split(":"))
    before = opens_at(day, office.tz, settings).date() - timedelta(days=1)
    return datetime.combine(before, time(hh, mm), office.tz)


def released_by_draw(office: Office, day: date, settings: Settings, now: datetime) -> bool:
    """Whether the day is released by a draw: the office is in lottery mode and the day enters
    the horizon after it switched (days already in the horizon keep their seats as they are).
    A test clock set back before the switch counts the switch from its now."""
    since = office.lottery_since
    return (
        office.lottery is not None
        and since is not None
        # a day of the clock's years: instants counted back from it stay in the calendar
        and CLOCK_YEARS[0] <= day.year <= CLOCK_YEARS[1]
        and opens_at(day, office.tz, settings) > min(since, now)
    )


def effective_weekday(day: date, mark: CalendarMark | None) -> Weekday:
    if mark is not None and mark.kind == "workday" and mark.as_weekday is not None:
        return mark.as_weekday
    return WEEKDAYS[day.weekday()]


def plan_windows(
    day: date,
    tz: ZoneInfo,
    hours: dict[str, list[HoursRange]],
    window_minutes: int,
    mark: CalendarMark | None,
) -> list[PlannedWindow]:
    """Cut the day's opening ranges into windows of `window_minutes`."""
    planned = []
    for span in hours.get(effective_weekday(day, mark), []):
        for m in range(minutes(span.start), minutes(span.end), window_minutes):
            start = time(m // 60, m % 60)
            end_m = m + window_minutes
            starts_at = datetime.combine(day, start, tzinfo=tz)
            # An end at 24:00 is the next day's midnight.
            ends_at = datetime.combine(day, time(0), tzinfo=tz) + timedelta(minutes=end_m)
            end = time((end_m // 60) % 24, end_m % 60)
            planned.append(PlannedWindow(start, end, starts_at, ends_at, span.capacity))
    return planned


def is_closed(
    day: date, mark: CalendarMark | None, closed_by_office: bool, planned_as: str | None
) -> bool:
    """Closed by the office, by a holiday, or because the make-up workday that planned its
    windows was withdrawn."""
    if closed_by_office or (mark is not None and mark.kind == "holiday"):
        return True
    borrowed = planned_as is not None and planned_as != WEEKDAYS[day.weekday()]
    return borrowed and (mark is None or mark.kind != "workday")


async def calendar_mark(conn: asyncpg.Connection, day: date) -> CalendarMark | None:
    row = await conn.fetchrow(queries["calendar_mark"], day)
    if row is None:
        return None
    return CalendarMark(row["kind"], row["as_weekday"], row["name"])


async def open_day(
    conn: asyncpg.Connection,
    office_id: str,
    tz: ZoneInfo,
    hours: dict[str, list[HoursRange]],
    window_minutes: int,
    day: date,
    now: datetime,
) -> int:
    """Plan a day's windows unless it was opened before; returns the windows created.

    A day opened with no windows (a closed weekday) is planned again only when it has
    become a make-up workday, since it holds no bookings; new hours for its weekday do not
    reopen it (opened days keep their windows, none included).
    """
    mark = await calendar_mark(conn, day)
    fresh = await conn.fetchval(queries["mark_day_opened"], office_id, day, now)
    if not fresh:
        if mark is None or mark.kind != "workday":
            return 0
        if await conn.fetchval(queries["day_has_windows"], office_id, day):
            return 0
    planned = plan_windows(day, tz, hours, window_minutes, mark)
    if not planned:
        return 0
    planned_as = effective_weekday(day, mark)
    await conn.execute(queries["set_planned_as"], office_id, day, planned_as)
    by_office = bool(await conn.fetchval(queries["closure_exists"], office_id, day))
    closed = is_closed(day, mark, by_office, planned_as)
    await conn.executemany(
        queries["insert_window"],
        [
            (office_id, day, w.start, w.end, w.starts_at, w.ends_at, w.capacity, closed)
            for w in planned
        ],
    )
    return len(planned)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


class Days:
    """Opens office-days on first use: plans their windows in Postgres and counts their seats
    at the gate, once per process (a crowd on a new day plans it once). Knows which days of
    lottery offices wait for their draw."""

    def __init__(self, pool: asyncpg.Pool, seats: Seats, settings: Settings) -> None:
        self._pool = pool
        self._seats = seats
        self._settings = settings
        # (office, day) pairs known to be opened already; a day, once opened, stays opened.
        self.opened: set[tuple[str, date]] = set()
        # (office, day) pairs whose draw is known to have finished; once drawn, stays drawn.
        self.drawn: set[tuple[str, date]] = set()
        self._opening = asyncio.Lock()
        self._being_opened: dict[tuple[str, date], asyncio.Event] = {}

    async def draw_pending(self, office: Office, day: date, now: datetime) -> datetime | None:
        """The draw instant of a day in the horizon that its draw has not released yet, else
        None (first come, first served)."""
        if office.lottery is None or (office.id, day) in self.drawn:
            return None
        if not released_by_draw(office, day, self._settings, now):
            return None
        draw_at = opens_at(day, office.tz, self._settings)
        if now < draw_at:
            return None  # not in the horizon yet: the horizon's own rule answers
        async with connection(self._pool) as conn:
            drawn = await conn.fetchval(queries["release_drawn"], office.id, day)
        if drawn:
            self.drawn.add((office.id, day))
            return None
        return draw_at

    async def ensure_opened(
        self, office: Office, days: list[date], now: datetime
    ) -> tuple[int, int]:
        """Plan any of these days not opened yet here; returns the days that got windows and
        the windows created."""
        opened_days = created = 0
        for day in days:
            if (office.id, day) in self.opened:
                continue
            if (busy := self._being_opened.get((office.id, day))) is not None:
                # A crowd on a day being opened wakes at once when it is, instead of taking
                # the lock in turn, one hand-off per turn of the loop.
                await busy.wait()
                if (office.id, day) in self.opened:
                    continue
            async with self._opening:
                if (office.id, day) in self.opened:
                    continue
                busy = self._being_opened[(office.id, day)] = asyncio.Event()
                try:
                    async with connection(self._pool) as conn, conn.transaction():
                        hours, minutes = office.hours, office.window_minutes
                        made = await open_day(conn, office.id, office.tz, hours, minutes, day, now)
                    if made:
                        await self._seats.fill(office.id, day, replace=False)
                        opened_days += 1
                    self.opened.add((office.id, day))
                    created += made
                finally:
                    del self._being_opened[(office.id, day)]
                    busy.set()
        return opened_days, created

    async def ensure_horizon(self, office: Office, now: datetime) -> tuple[date, date]:
        """The office's bookable days, every one of them opened: the horizon without the newest
        days that still wait for their draw (those are opened by the draw itself)."""
        first, last = horizon(now, office.tz, self._settings)
        while last >= first and await self.draw_pending(office, last, now) is not None:
            last -= timedelta(days=1)
        await self.ensure_opened(office, days_between(first, last), now)
        return first, last
