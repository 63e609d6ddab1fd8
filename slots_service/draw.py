"""Fair release by lottery (API 1.1): an office-day's release record and its draw.

A day of an office in lottery mode is released at the instant it enters the horizon (O) by a
draw among the entries taken since `entries_open` on the evening before (entries.py). The
record is made once, when its entry period opens: a seed from `secrets`, of which only the
SHA-256 (the commitment) is shown until the draw, then revealed. Anyone can verify a draw from
its public listing: each entry's rank is the order of HMAC-SHA256(seed, entry id), lowest hex
first, and in that order each entry got the first of its choices with seats for its party
whose booking every rule allowed.

The draw is one transaction under the record's row lock: it runs once however many
schedulers or admin calls start it, and is never half-applied. Every winner's booking is made
by the same rules and the same statement as `POST /v1/bookings` (booking.book_within); losers
who asked for it join the waitlist, which gets the seats the winners left; the gate's counters
are written from what the transaction holds before it commits (nobody else can book the day
until then: it is `draw_pending`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time as clock
from datetime import date, datetime, time, timedelta
from typing import Literal

import asyncpg
import msgspec

from . import booking, errors, metrics, party, waitlist
from .catalog import Office
from .db import connection, in_transaction, one, queries
from .horizon import calendar_mark as mark_of
from .horizon import (
    days_between,
    entries_open_at,
    horizon,
    is_closed,
    open_day,
    opens_at,
    plan_windows,
    released_by_draw,
)
from .horizon import effective_weekday as weekday_of
from .models import BookingOut, DrawItem, DrawPage, EntryOut, ReleaseOut
from .render import event_payload, instant
from .render import person as render_person
from .runtime import Runtime

_encode = msgspec.json.Encoder().encode


def rank_key(seed: bytes, entry_id: str) -> str:
    """An entry's place in the draw: HMAC-SHA256(key = seed, message = entry id), hex."""
    return hmac.new(seed, entry_id.encode("ascii"), hashlib.sha256).hexdigest()


def render_entry(row: asyncpg.Record, office: Office, draw_at: datetime) -> EntryOut:
    return EntryOut(
        id=row["id"],
        status=row["status"],
        office_id=row["office_id"],
        service_id=row["service_id"],
        date=row["day"].isoformat(),
        choices=list(row["choices"]),
        party_size=row["party_size"],
        person=render_person(row),
        members=[m.out() for m in party.from_stored(row["members"])],
        channel=row["channel"],
        reference=row["reference"],
        metadata=row["metadata"],
        waitlist=row["waitlist"],
        created_at=instant(row["created_at"], office.tz) or "",
        draw_at=instant(draw_at, office.tz) or "",
        booking_id=row["booking_id"],
        lost_reason=row["lost_reason"],
        waitlist_id=row["waitlist_id"],
    )


async def make_record(conn: asyncpg.Connection, rt: Runtime, office: Office, day: date) -> None:
    """The day's release record, made with its seed by the first caller (later ones keep it)."""
    seed = secrets.token_bytes(32)
    await conn.execute(
        queries["release_make"],
        office.id,
        day,
        entries_open_at(office, day, rt.settings),
        opens_at(day, office.tz, rt.settings),
        seed,
        hashlib.sha256(seed).hexdigest(),
    )


async def is_open_day(conn: asyncpg.Connection, rt: Runtime, office: Office, day: date) -> bool:
    """Whether the office opens on the day (as planned, or as it would be planned now)."""
    if await conn.fetchval(queries["day_is_opened"], office.id, day):
        return any(
            not w["closed"] for w in await conn.fetch(queries["day_windows"], office.id, day)
        )
    mark = await mark_of(conn, day)
    if not plan_windows(day, office.tz, office.hours, office.window_minutes, mark):
        return False
    by_office = bool(await conn.fetchval(queries["closure_exists"], office.id, day))
    return not is_closed(day, mark, by_office, weekday_of(day, mark))


# ---------------------------------------------------------------- the public record


async def record(rt: Runtime, office_id: str, day: date) -> ReleaseOut:
    office = await rt.catalog.office(office_id)
    now = await rt.clock.now()
    async with connection(rt.pool) as conn:
        row = await _released(conn, rt, office, day, now)
    opens, draw_at = (
        entries_open_at(office, day, rt.settings),
        opens_at(day, office.tz, rt.settings),
    )
    drawn = row is not None and row["drawn_at"] is not None
    status: Literal["scheduled", "taking_entries", "drawing", "drawn"]
    if drawn:
        status = "drawn"
    elif now < opens:
        status = "scheduled"
    elif now < draw_at:
        status = "taking_entries"
    else:
        status = "drawing"
    return ReleaseOut(
        office_id=office.id,
        date=day.isoformat(),
        mode="lottery",
        entries_open_at=instant(opens, office.tz) or "",
        draw_at=instant(draw_at, office.tz) or "",
        status=status,
        commitment=row["commitment"] if row is not None else None,
        seed=bytes(row["seed"]).hex() if row is not None and drawn else None,
        entries=(row["entries"] if drawn else row["entered"]) if row is not None else 0,
        won=row["won"] if row is not None and drawn else 0,
        lost=row["lost"] if row is not None and drawn else 0,
    )


async def _released(
    conn: asyncpg.Connection, rt: Runtime, office: Office, day: date, now: datetime
) -> asyncpg.Record | None:
    """The record of a day this office releases by lottery (made once its entries opened), or
    404: an office not in lottery mode, a day not released by a draw, a day it is closed."""
    if not released_by_draw(office, day, rt.settings, now):
        raise errors.NotFound(f"{office.id} does not release {day} by lottery")
    row = await conn.fetchrow(queries["release_get"], office.id, day)
    if row is not None and row["drawn_at"] is not None:
        return row
    if not await is_open_day(conn, rt, office, day):
        raise errors.NotFound(f"{office.id} is not open on {day}")
    if row is None and now >= entries_open_at(office, day, rt.settings):
        await make_record(conn, rt, office, day)
        row = await one(conn, "release_get", office.id, day)
    return row


async def listing(rt: Runtime, office_id: str, day: date, after: int, limit: int) -> DrawPage:
    office = await rt.catalog.office(office_id)
    now = await rt.clock.now()
    async with connection(rt.pool) as conn:
        row = await _released(conn, rt, office, day, now)
        if row is None or row["drawn_at"] is None:
            draw_at = opens_at(day, office.tz, rt.settings)
            raise errors.DrawPending(instant(draw_at, office.tz) or "")
        rows = await conn.fetch(queries["draw_page"], office.id, day, after, limit + 1)
    items = [
        DrawItem(rank=r["rank"], entry_id=r["id"], status=r["status"], start=r["won_start"])
        for r in rows[:limit]
    ]
    return DrawPage(items=items, next=items[-1].rank if len(rows) > limit else None)


# ---------------------------------------------------------------- the draw


async def draw(rt: Runtime, office: Office, day: date, now: datetime) -> dict[str, int] | None:
    """Draw one office-day, unless it was drawn before: None then, else its summary."""
    started = clock.perf_counter()

    async def work(conn: asyncpg.Connection) -> dict[str, int] | None:
        await make_record(conn, rt, office, day)
        release = await one(conn, "release_lock", office.id, day)
        if release["drawn_at"] is not None:
            return None
        seed = bytes(release["seed"])
        await open_day(conn, office.id, office.tz, office.hours, office.window_minutes, day, now)
        seats = {
            w["start"]: w["capacity"] - w["booked"]
            for w in await conn.fetch(queries["day_windows"], office.id, day)
            if not w["closed"] and w["starts_at"] > now
        }
        entries = await conn.fetch(queries["entries_to_draw"], office.id, day)
        ranked = sorted(entries, key=lambda e: rank_key(seed, e["id"]))
        outcomes = []
        for rank, entry in enumerate(ranked, 1):
            outcomes.append((rank, entry, *await _allot(conn, rt, office, entry, seats, now)))
        won = lost = 0
        draw_at = opens_at(day, office.tz, rt.settings)
        for rank, entry, made, reason in outcomes:
            waiting = None
            if made is None and entry["waitlist"]:
                waiting = await _enlist(conn, rt, office, entry, now)
            row = await one(
                conn,
                "entry_drawn",
                entry["id"],
                rank,
                "won" if made else "lost",
                made.start if made else None,
                made.id if made else None,
                reason,
                waiting,
            )
            out = render_entry(row, office, draw_at)
            kind = "entry.won" if made else "entry.lost"
            payload = event_payload(made, entry=out) if made else _encode({"entry": out})
            await conn.execute(
                queries["insert_event"], kind, now, made.id if made else None, day, payload
            )
            metrics.events_published.labels(kind).inc()
            won, lost = won + (made is not None), lost + (made is None)
        await waitlist.offer_day(conn, rt, office, day, now)  # the seats the winners left
        await conn.execute(queries["release_done"], office.id, day, now, len(ranked), won, lost)
        # The gate, from what this transaction holds: nobody else books the day before commit.
        await rt.seats.fill(office.id, day, replace=True, conn=conn)
        return {"entries": len(ranked), "won": won, "lost": lost}

    summary = await in_transaction(rt.pool, work)
    rt.days.drawn.add((office.id, day))
    rt.days.opened.add((office.id, day))
    if summary is not None:
        metrics.draw_duration.observe(clock.perf_counter() - started)
        metrics.draw_entries.labels("won").inc(summary["won"])
        metrics.draw_entries.labels("lost").inc(summary["lost"])
        metrics.entries.labels("won").inc(summary["won"])
        metrics.entries.labels("lost").inc(summary["lost"])
    return summary


async def _allot(
    conn: asyncpg.Connection,
    rt: Runtime,
    office: Office,
    entry: asyncpg.Record,
    seats: dict[str, int],
    now: datetime,
) -> tuple[BookingOut | None, str | None]:
    """The first of the entry's choices with seats for its party whose booking every rule
    allows: (its booking, None), else (None, "no_seats" or the code of the rule refusing)."""
    service = await rt.catalog.service(entry["service_id"])
    party_size = entry["party_size"]
    reason = "no_seats"
    for choice in entry["choices"]:
        if seats.get(choice, 0) < party_size:
            continue
        order = booking.stored_order(
            office, service, entry, entry["day"], booking.parse_start(choice)
        )
        try:
            made = await booking.book_within(conn, rt, order, now)
        except errors.SlotFull:
            seats[choice] = 0
            continue
        except errors.NotBookable as exc:  # that window can't be booked (closed, started)
            reason = exc.code
            continue
        except errors.DomainError as exc:  # a person rule: no window would do
            return None, exc.code
        seats[choice] -= party_size
        return made, None
    return None, reason


async def _enlist(
    conn: asyncpg.Connection, rt: Runtime, office: Office, entry: asyncpg.Record, now: datetime
) -> str | None:
    """A losing entry that asked for it waits for its day: a new waiting entry, or the one the
    person already holds for the service (None when a member already waits elsewhere)."""
    everyone = [entry["id_hmac"], *(m.id_hmac for m in party.from_stored(entry["members"]))]
    mine = await conn.fetchval(
        queries["waitlist_of_identities"], entry["service_id"], [everyone[0]]
    )
    if mine is not None:
        return str(mine)
    if await conn.fetchval(queries["waitlist_of_identities"], entry["service_id"], everyone):
        return None
    service = await rt.catalog.service(entry["service_id"])
    order = booking.stored_order(office, service, entry, entry["day"], time(0))
    row = await waitlist.enlist(conn, order, entry["day"], entry["day"], now)
    metrics.waitlist.labels("waiting").inc()
    return str(row["id"])


async def draw_releases(rt: Runtime, now: datetime) -> dict[str, int]:
    """Make the records of entry periods that opened, and draw every day of a lottery office
    that entered the horizon and is not drawn yet."""
    drawn = entries = won = prepared = 0
    for office in await rt.catalog.offices():
        if office.lottery is None:
            continue
        first, last = horizon(now, office.tz, rt.settings)
        upcoming = last + timedelta(days=1)
        if released_by_draw(office, upcoming, rt.settings, now) and now >= entries_open_at(
            office, upcoming, rt.settings
        ):
            async with connection(rt.pool) as conn:
                if await is_open_day(conn, rt, office, upcoming):
                    await make_record(conn, rt, office, upcoming)
                    prepared += 1
        due = [
            d
            for d in days_between(first, last)
            if released_by_draw(office, d, rt.settings, now) and (office.id, d) not in rt.days.drawn
        ]
        if not due:
            continue
        async with connection(rt.pool) as conn:
            done = {
                r["day"]
                for r in await conn.fetch(queries["release_drawn_days"], office.id, first, last)
            }
        for d in due:
            if d in done:
                rt.days.drawn.add((office.id, d))
                continue
            summary = await draw(rt, office, d, now)
            if summary is not None:
                drawn += 1
                entries += summary["entries"]
                won += summary["won"]
    return {"prepared": prepared, "drawn": drawn, "entries": entries, "won": won}
