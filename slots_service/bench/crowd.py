"""The `crowd` and `hot` scenarios' set-up and checks in Postgres, beside the API.

`crowd`: the 00:00 release. An office whose day of CROWD_WINDOWS windows (CROWD_SEATS seats
in all) enters the horizon at the opening instant: the API runs on the shared test clock, the
bench sets it a second before the instant (the day is then outside the horizon and has no
windows: checked), starts `slots-service scheduler` (its open-horizon prepares the day, as in
production, in the half hour before it opens), and the load generator moves the clock across
the instant with its first request, then fires every connection at once. What was sold is
counted in Postgres.

`hot`: one window whose seats are raised in Postgres above what the API accepts (10 000), then
counted again in Redis by `reconcile`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from .catalog import SERVICE_ID, TIMEZONE, WEEKDAYS

CROWD_WINDOWS = 10
CROWD_WINDOW_MINUTES = 30


@dataclass(frozen=True)
class Crowd:
    office: str
    day: date  # the day that enters the horizon at `opens`
    opens: datetime  # the opening instant (office-local midnight)
    seats_per_window: int
    starts: tuple[str, ...]  # its windows' starts

    @property
    def seats(self) -> int:
        return self.seats_per_window * len(self.starts)

    @property
    def slots(self) -> list[tuple[str, str]]:
        return [(self.day.isoformat(), start) for start in self.starts]


def plan(office: str, seats: int, horizon_days: int, now: datetime) -> Crowd:
    """The crowd of a run: opening two days ahead of the real clock, so that nothing the
    real clock opened (up to today + horizon + 1) is the day released."""
    tz = ZoneInfo(TIMEZONE)
    opens = datetime.combine(now.astimezone(tz).date() + timedelta(days=2), dtime(0), tz)
    per_window = max(1, seats // CROWD_WINDOWS)
    starts = tuple(
        f"{8 + (i * CROWD_WINDOW_MINUTES) // 60:02d}:{(i * CROWD_WINDOW_MINUTES) % 60:02d}"
        for i in range(CROWD_WINDOWS)
    )
    return Crowd(office, opens.date() + timedelta(days=horizon_days), opens, per_window, starts)


def office_body(crowd: Crowd) -> dict[str, Any]:
    end_minutes = 8 * 60 + CROWD_WINDOWS * CROWD_WINDOW_MINUTES
    hours = {
        "start": "08:00",
        "end": f"{end_minutes // 60:02d}:{end_minutes % 60:02d}",
        "capacity": crowd.seats_per_window,
    }
    return {
        "name": f"Bench office {crowd.office}",
        "timezone": TIMEZONE,
        "services": [SERVICE_ID],
        "window_minutes": CROWD_WINDOW_MINUTES,
        "hours": {day: [hours] for day in WEEKDAYS},
    }


def clock_request(host: str, port: int, token: str, instant: datetime) -> str:
    """PUT /v1/admin/clock as raw HTTP/1.1: the load generator's `go`."""
    body = f'{{"now":"{instant.isoformat()}"}}'
    return (
        f"PUT /v1/admin/clock HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    )


# ---------------------------------------------------------------- Postgres


async def _fetchrow(url: str, sql: str, *args: object) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(sql, *args)
    finally:
        await conn.close()
    assert row is not None
    return row


def settle(url: str) -> str:
    """Between scenarios: what the one before left Postgres to do in the background (vacuum
    its dead rows, write its pages out) done now, so no scenario pays for another's writes.
    Returns what was done (a given server may not let this user CHECKPOINT).

    Never on the fresh database: a VACUUM of empty tables records them as empty, and the
    booking statement's cached generic plan then scans them whole (seq scans cost nothing on
    no pages) while the scenario fills them; never-vacuumed tables are planned by index."""

    async def run() -> str:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM (ANALYZE)")
            try:
                await conn.execute("CHECKPOINT")
            except asyncpg.PostgresError as exc:
                return f"VACUUM (CHECKPOINT refused: {type(exc).__name__})"
            return "VACUUM, CHECKPOINT"
        finally:
            await conn.close()

    return asyncio.run(run())


def windows_of(url: str, office: str, day: date) -> int:
    """Windows planned in Postgres for an office-day."""
    sql = "SELECT count(*) AS n FROM windows WHERE office_id = $1 AND day = $2"
    return int(asyncio.run(_fetchrow(url, sql, office, day))["n"])


def wait_planned(url: str, crowd: Crowd, timeout_s: float) -> float:
    """Wait until the scheduler planned the crowd's day; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if windows_of(url, crowd.office, crowd.day) == len(crowd.starts):
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"the scheduler did not plan {crowd.office} {crowd.day} in {timeout_s} s")


def sold(url: str, crowd: Crowd) -> dict[str, int]:
    """What Postgres says of the crowd's day: seats sold (bookings held), the windows' own
    count, their capacity, and windows over capacity."""
    sql = """
        SELECT
          (SELECT coalesce(sum(b.party_size), 0) FROM bookings b JOIN windows w
             ON w.id = b.window_id
           WHERE w.office_id = $1 AND w.day = $2 AND b.status <> 'cancelled') AS sold,
          coalesce(sum(booked), 0) AS booked,
          coalesce(sum(capacity), 0) AS capacity,
          count(*) FILTER (WHERE booked > capacity) AS over
        FROM windows WHERE office_id = $1 AND day = $2
    """
    row = asyncio.run(_fetchrow(url, sql, crowd.office, crowd.day))
    return {key: int(row[key]) for key in ("sold", "booked", "capacity", "over")}


def raise_capacity(url: str, office: str, day: str, start: str, capacity: int) -> None:
    """The hot window's seats, above what the API accepts (reconcile then counts them)."""
    sql = """
        UPDATE windows SET capacity = $4
        WHERE office_id = $1 AND day = $2 AND start_time = $3 RETURNING id
    """
    hhmm = dtime.fromisoformat(start)
    asyncio.run(_fetchrow(url, sql, office, date.fromisoformat(day), hhmm, capacity))
