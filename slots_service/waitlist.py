"""The waitlist (API 1.1): seats that come free go first to the people waiting for them.

Whatever frees seats of a window (a cancellation, a reschedule away, a capacity raise, a
reopened day) calls `offer` in its own transaction, with the window's row still locked by the
change: the oldest fitting `waiting` entry gets its booking there, through the same rules and
the same booking statement as `POST /v1/bookings`, so the public and the gate never see those
seats free. An entry whose person fails a rule at that moment is passed over and keeps
waiting. After the commit the gate gets back only the seats nobody waiting took.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import partial

import asyncpg
import msgspec

from . import booking, errors, idempotency, metrics, party
from .booking import Order
from .catalog import Office
from .db import connection, in_transaction, one, queries
from .horizon import local_today
from .idempotency import Claim
from .models import BookingOut, WaitlistIn, WaitlistOut
from .render import event_payload, instant
from .render import person as render_person
from .runtime import Runtime

_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(WaitlistOut)
_BATCH = 200


def new_id() -> str:
    return "W" + booking.new_booking_id()[1:]


def render(row: asyncpg.Record, office: Office) -> WaitlistOut:
    return WaitlistOut(
        id=row["id"],
        status=row["status"],
        office_id=row["office_id"],
        service_id=row["service_id"],
        from_=row["from_day"].isoformat(),
        to=row["to_day"].isoformat(),
        party_size=row["party_size"],
        person=render_person(row),
        members=[m.out() for m in party.from_stored(row["members"])],
        channel=row["channel"],
        created_at=instant(row["created_at"], office.tz) or "",
        booking_id=row["booking_id"],
    )


def identities(order: Order) -> list[bytes]:
    return [order.who.id_hmac, *(m.id_hmac for m in order.members)]


async def _emit(
    conn: asyncpg.Connection,
    kind: str,
    row: asyncpg.Record,
    office: Office,
    now: datetime,
    made: BookingOut | None = None,
) -> None:
    entry = render(row, office)
    payload = event_payload(made, waitlist=entry) if made else _encode({"waitlist": entry})
    day = row["to_day"] if made is None else date.fromisoformat(made.date)
    await conn.execute(queries["insert_event"], kind, now, row["booking_id"], day, payload)
    metrics.events_published.labels(kind).inc()


# ---------------------------------------------------------------- joining


async def enlist(
    conn: asyncpg.Connection, order: Order, first: date, last: date, now: datetime
) -> asyncpg.Record:
    """A new waiting entry for the order's office and service, `first`..`last`; the unique key
    on its identities is the arbiter of one waiting entry per identity and service."""
    row = await one(
        conn,
        "waitlist_insert",
        new_id(),
        order.office.id,
        order.service.id,
        first,
        last,
        order.party_size,
        *order.kept(),
        now,
    )
    await conn.execute(
        queries["waitlist_identities_insert"], order.service.id, row["id"], identities(order)
    )
    return row


async def join(
    rt: Runtime, body: WaitlistIn, now: datetime, keyed: idempotency.Keyed | None
) -> WaitlistOut:
    """Join the waitlist of a service at an office for a range of days; booked at once when a
    window of the range has seats for the party."""
    office = await rt.catalog.office(body.office_id)
    service = await rt.catalog.service(body.service_id)
    order = booking.order_of(rt.settings, office, service, body, body.from_, time(0))
    booking.check_signup(rt.settings, order)
    tomorrow = local_today(now, office.tz) + timedelta(days=1)
    last = (await rt.days.ensure_horizon(office, now))[1]
    if body.from_ > body.to:
        raise errors.NotBookable("from must not be after to")
    if not tomorrow <= body.from_ or body.to > last:
        raise errors.NotBookable(f"from and to lie within {tomorrow}..{last}")

    async def work(held: Claim | None) -> tuple[WaitlistOut, BookingOut | None]:
        async def inside(conn: asyncpg.Connection) -> tuple[WaitlistOut, BookingOut | None]:
            await booking.check_person_rules(conn, rt.settings, order, now)
            everyone = identities(order)
            waiting = await conn.fetchval(queries["waitlist_of_identities"], service.id, everyone)
            if waiting is not None:
                raise errors.WaitlistEntryExists(waiting)
            row = await enlist(conn, order, body.from_, body.to, now)
            made = await _book_at_once(conn, rt, order, body.from_, body.to, now)
            if made is not None:
                row = await one(conn, "waitlist_booked", row["id"], made.id, now)
                await _emit(conn, "waitlist.booked", row, office, now, made)
            out = render(row, office)
            await idempotency.store(conn, held, _encode(out))
            return out, made

        try:
            return await in_transaction(rt.pool, inside)
        except errors.WaitlistEntryExists as exc:
            if exc.extra["waitlist_id"] is not None:
                raise
        async with connection(rt.pool) as conn:  # a race the unique key caught: name the entry
            found = await conn.fetchval(
                queries["waitlist_of_identities"], service.id, identities(order)
            )
        raise errors.WaitlistEntryExists(found)

    made: list[BookingOut] = []

    async def keep_booking(held: Claim | None) -> WaitlistOut:
        out, booked = await work(held)
        if booked is not None:
            made.append(booked)
        return out

    out = await idempotency.run_keyed(
        rt.pool, keyed, now, rt.settings.idempotency_lease_s, keep_booking, _decoder
    )
    for booked in made:  # the gate counts the seats the entry took at once
        day = date.fromisoformat(booked.date)
        await rt.counters.give(office.id, day, booked.start, -booked.party_size)
    metrics.waitlist.labels("booked_at_once" if made else "waiting").inc()
    return out


async def _book_at_once(
    conn: asyncpg.Connection, rt: Runtime, order: Order, first: date, last: date, now: datetime
) -> BookingOut | None:
    """The first window of the range with seats for the party, if any: booked for the entry
    (a free seat that a waiting person could take goes to them)."""
    windows = await conn.fetch(
        queries["windows_with_seats"], order.office.id, first, last, order.party_size, now
    )
    for w in windows:
        if await rt.days.draw_pending(order.office, w["day"], now) is not None:
            continue
        try:
            return await booking.book_within(
                conn, rt, order._replace(day=w["day"], start=w["start_time"]), now
            )
        except (errors.SlotFull, errors.NotBookable):
            continue
        except errors.DomainError:  # a rule of that moment (the daily limit): it waits
            return None
    return None


# ---------------------------------------------------------------- freed seats


async def offer(
    conn: asyncpg.Connection, rt: Runtime, office: Office, day: date, start: time, now: datetime
) -> int:
    """In the transaction that freed seats of a window (its row locked by that change): the
    free seats to the oldest fitting waiting entries. Returns the seats they took."""
    window = await conn.fetchrow(queries["window_at"], office.id, day, start)
    if window is None or window["closed"] or window["starts_at"] <= now:
        return 0
    free = window["capacity"] - window["booked"]
    taken, after = 0, 0
    while free > 0:
        row = await conn.fetchrow(queries["waitlist_next"], office.id, day, free, after)
        if row is None:
            break
        after = row["seq"]
        service = await rt.catalog.service(row["service_id"])
        order = booking.stored_order(office, service, row, day, start)
        try:
            made = await booking.book_within(conn, rt, order, now)
        except errors.DomainError:  # a rule refuses them now: passed over, still waiting
            metrics.waitlist.labels("passed_over").inc()
            continue
        row = await one(conn, "waitlist_booked", row["id"], made.id, now)
        await _emit(conn, "waitlist.booked", row, office, now, made)
        metrics.waitlist.labels("booked").inc()
        free -= made.party_size
        taken += made.party_size
    return taken


async def offer_day(
    conn: asyncpg.Connection, rt: Runtime, office: Office, day: date, now: datetime
) -> dict[str, int]:
    """`offer` for every window of an office-day with seats free; seats taken per start."""
    taken: dict[str, int] = {}
    for w in await conn.fetch(queries["day_windows"], office.id, day):
        if not w["closed"] and w["capacity"] > w["booked"]:
            seats = await offer(conn, rt, office, day, w["start_time"], now)
            if seats:
                taken[w["start"]] = seats
    return taken


# ---------------------------------------------------------------- reading, leaving


async def get(rt: Runtime, waitlist_id: str) -> WaitlistOut:
    async with connection(rt.pool) as conn:
        row = await conn.fetchrow(queries["waitlist_by_id"], waitlist_id)
    if row is None:
        raise errors.NotFound(f"no waitlist entry {waitlist_id!r}")
    return render(row, await rt.catalog.office(row["office_id"]))


async def cancel(rt: Runtime, waitlist_id: str, now: datetime) -> WaitlistOut:
    async def work(conn: asyncpg.Connection) -> WaitlistOut:
        row = await conn.fetchrow(queries["waitlist_lock"], waitlist_id)
        if row is None:
            raise errors.NotFound(f"no waitlist entry {waitlist_id!r}")
        office = await rt.catalog.office(row["office_id"])
        if row["status"] == "cancelled":
            return render(row, office)
        if row["status"] != "waiting":
            raise errors.InvalidState(f"a {row['status']} waitlist entry cannot be cancelled")
        row = await one(conn, "waitlist_end", waitlist_id, "cancelled", now)
        metrics.waitlist.labels("cancelled").inc()
        return render(row, office)

    return await in_transaction(rt.pool, work)


async def _expire_some(rt: Runtime, office: Office, now: datetime, conn: asyncpg.Connection) -> int:
    today = local_today(now, office.tz)
    ids = await conn.fetch(queries["waitlist_due_to_expire"], office.id, today, _BATCH)
    for r in ids:
        row = await one(conn, "waitlist_end", r["id"], "expired", now)
        await _emit(conn, "waitlist.expired", row, office, now)
    return len(ids)


async def expire(rt: Runtime, now: datetime) -> dict[str, int]:
    """`waiting` entries whose last day has passed become `expired` (`waitlist.expired`)."""
    expired = 0
    for office in await rt.catalog.offices():
        while True:
            count = await in_transaction(rt.pool, partial(_expire_some, rt, office, now))
            expired += count
            metrics.waitlist.labels("expired").inc(count)
            if count < _BATCH:
                break
    return {"expired": expired}
