"""Book, cancel, reschedule, check in: the rules of a booking, no HTTP.

The path of a booking: validate against the cached office and service, take the seats at
the Redis gate, then one Postgres statement decides (see queries.sql `book`). Redis is only
asked first; whatever it says, Postgres is what makes a booking, so every path here stays
correct when Redis lost data, restarted, or is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Any

import asyncpg
import msgspec

from . import errors, idempotency, metrics, people
from .catalog import Office, Service
from .counters import Gate
from .db import connection, in_transaction, queries
from .horizon import horizon, local_today
from .idempotency import Claim
from .models import (
    BookingIn,
    BookingOut,
    CancelIn,
    DayBefore,
    HoursBefore,
    PersonOut,
    RescheduleIn,
    Standing,
    minutes,
)
from .problems import problem_body
from .render import booking as render_booking
from .render import event_payload, instant
from .runtime import Runtime

log = logging.getLogger(__name__)

_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: 5 bits each
_ID_LENGTH = 14  # 70 random bits
_encode = msgspec.json.Encoder().encode
_background: set[asyncio.Task[None]] = set()
_refilling: set[tuple[str, date]] = set()


def new_booking_id() -> str:
    """14 symbols of 32 from one read of the system's random source (256 % 32 == 0: unbiased)."""
    return "".join(_ID_ALPHABET[b & 31] for b in secrets.token_bytes(_ID_LENGTH))


def parse_start(hhmm: str) -> time:
    m = minutes(hhmm)
    return time(m // 60, m % 60)


def cancel_deadline(
    service: Service, day: date, starts_at: datetime, office: Office
) -> datetime | None:
    """Until when the person may cancel; None when the service sets no cutoff."""
    cutoff = service.cancel_cutoff
    if isinstance(cutoff, DayBefore):
        return datetime.combine(day - timedelta(days=1), parse_start(cutoff.time), office.tz)
    if isinstance(cutoff, HoursBefore):
        return starts_at - timedelta(hours=cutoff.hours)
    return None


def _spawn(coro: Any) -> None:
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def finish_background() -> None:
    """At shutdown: let the refills requests started end before the pools close."""
    await asyncio.gather(*_background, return_exceptions=True)


def refill_soon(rt: Runtime, office_id: str, day: date) -> None:
    """Redis lost a day's counters: fill them from Postgres in the background, once at a time
    per day however many requests noticed (a crowd after a Redis restart notices together)."""
    if (office_id, day) in _refilling:
        return
    _refilling.add((office_id, day))
    _spawn(_refill_quietly(rt, office_id, day))


async def _refill_quietly(rt: Runtime, office_id: str, day: date) -> None:
    try:
        await rt.fill_counters(office_id, day, replace=False)
    except Exception as exc:  # the reconcile job will do it
        log.warning("refilling redis counters failed: %s", type(exc).__qualname__)
    finally:
        _refilling.discard((office_id, day))


def check_bookable(
    rt: Runtime,
    office: Office,
    service: Service,
    day: date,
    start: time,
    party: int,
    now: datetime,
) -> datetime:
    """The rules that need no database; returns the window's start instant."""
    if service.id not in office.services:
        raise errors.NotBookable(f"service {service.id!r} is not offered at {office.id!r}")
    if party > service.max_party_size:
        raise errors.NotBookable(f"party_size is at most {service.max_party_size} here")
    first, last = horizon(now, office.tz, rt.settings)
    if not first <= day <= last:
        raise errors.NotBookable(f"{day} is outside the booking horizon {first}..{last}")
    starts_at = datetime.combine(day, start, office.tz)
    if starts_at <= now:
        raise errors.NotBookable("the window has already started")
    return starts_at


async def book(
    rt: Runtime, req: BookingIn, now: datetime, keyed: idempotency.Keyed | None = None
) -> tuple[int, bytes]:
    """Make a booking: (201, the booking), or with an Idempotency-Key seen before, the first
    answer again. Refusals raise their domain error (and are kept for the key)."""
    try:
        return await _book(rt, req, now, keyed)
    except errors.DomainError as exc:
        metrics.bookings.labels(exc.code).inc()
        raise
    except BaseException:
        metrics.bookings.labels("error").inc()
        raise


async def _book(
    rt: Runtime, req: BookingIn, now: datetime, keyed: idempotency.Keyed | None
) -> tuple[int, bytes]:
    office = await rt.catalog.office(req.office_id)
    service = await rt.catalog.service(req.service_id)
    if service.requires_reference and not req.reference:
        raise errors.NotBookable(f"service {service.id!r} requires a reference")
    start = parse_start(req.start)
    starts_at = check_bookable(rt, office, service, req.date, start, req.party_size, now)
    await rt.ensure_opened(office, [req.date], now)
    key = rt.settings.pii_key.get()
    id_hmac = people.identity_hmac(key, req.person.id_type, req.person.id_number)
    attempts = (id_hmac[:12].hex(), rt.settings.rate_limit_per_person_per_minute, 60)
    gate = await rt.counters.take(office.id, req.date, req.start, req.party_size, attempts)
    lease_s = rt.settings.idempotency_lease_s
    if gate is Gate.FULL:  # the crowd's answer: Postgres is asked nothing but the key, if any
        refusal = errors.SlotFull()
        if keyed is not None:
            replay = await idempotency.refuse(
                rt.pool, keyed, refusal.status, problem_body(refusal), now, lease_s
            )
            if replay is not None:
                return replay.status, replay.body
        raise refusal
    held: Claim | None = None
    try:
        if keyed is not None:
            found = await idempotency.claim(rt.pool, keyed, now, lease_s)
            if isinstance(found, idempotency.Replay):
                if gate is Gate.TAKEN:
                    await rt.counters.give(office.id, req.date, req.start, req.party_size)
                return found.status, found.body
            held = found
        body = await _record(rt, req, office, service, start, starts_at, id_hmac, now, held)
        return 201, body
    except BaseException as exc:
        await _compensate(rt, gate, exc, office.id, req.date, req.start, req.party_size)
        if held is not None:
            if isinstance(exc, errors.DomainError) and exc.replayable:
                await idempotency.finish(rt.pool, held, exc.status, problem_body(exc))
            else:
                await idempotency.release(rt.pool, held)
        raise
    finally:
        if gate is Gate.MISSING:
            refill_soon(rt, office.id, req.date)


async def _compensate(
    rt: Runtime, gate: Gate, exc: BaseException, office_id: str, day: date, start: str, seats: int
) -> None:
    """Seats the gate took for a request that booked nothing go back to Redis, unless
    Postgres, the arbiter, said the window is full: then Redis counted seats that are not
    there, and keeping the take brings its counter down to the truth."""
    if gate is Gate.TAKEN and not isinstance(exc, errors.SlotFull):
        await rt.counters.give(office_id, day, start, seats)


async def _record(
    rt: Runtime,
    req: BookingIn,
    office: Office,
    service: Service,
    start: time,
    starts_at: datetime,
    id_hmac: bytes,
    now: datetime,
    held: Claim | None,
) -> bytes:
    key = rt.settings.pii_key.get()
    person = req.person
    masked = people.mask(person.id_number)
    phone = people.phone_hmac(key, person.phone) if rt.settings.one_phone_per_identity else None
    ends_at = starts_at + timedelta(minutes=office.window_minutes)
    for _ in range(2):
        deadline = cancel_deadline(service, req.date, starts_at, office)
        out = BookingOut(
            id=new_booking_id(),
            status="booked",
            office_id=office.id,
            service_id=service.id,
            date=req.date.isoformat(),
            start=req.start,
            end=ends_at.astimezone(office.tz).strftime("%H:%M"),
            starts_at=instant(starts_at, office.tz) or "",
            ends_at=instant(ends_at, office.tz) or "",
            party_size=req.party_size,
            person=PersonOut(id_type=person.id_type, id_number_masked=masked, name=person.name),
            channel=req.channel,
            reference=req.reference,
            metadata=req.metadata,
            created_at=instant(now, office.tz) or "",
            cancel_deadline=instant(deadline, office.tz),
            cancelled_at=None,
            cancelled_by=None,
            cancel_reason=None,
            checked_in_at=None,
            ticket=None,
        )
        body = _encode(out)
        async with connection(rt.pool) as conn:
            try:
                row = await conn.fetchrow(
                    queries["book"],
                    office.id,
                    req.date,
                    start,
                    ends_at.astimezone(office.tz).time(),
                    req.party_size,
                    id_hmac,
                    person.id_type,
                    masked,
                    phone,
                    out.id,
                    service.id,
                    person.name,
                    req.channel,
                    req.reference,
                    req.metadata,
                    local_today(now, office.tz),
                    rt.settings.bookings_per_day,
                    rt.settings.active_bookings_per_service,
                    now,
                    deadline,
                    event_payload(out),
                    held.api_key_hash if held else None,
                    held.key if held else None,
                    body,
                    held.token if held else None,
                )
            except asyncpg.exceptions.UniqueViolationError as exc:
                if exc.constraint_name == "bookings_one_active_per_service":
                    found = await conn.fetchval(queries["active_booking_of"], id_hmac, service.id)
                    raise errors.ActiveBookingExists(found) from exc
                raise
            assert row is not None
            if row["booking_id"] is not None:
                metrics.bookings.labels("created").inc()
                metrics.events_published.labels("booking.created").inc()
                return body
            verdict = row["verdict"]
            if verdict != "no_window":
                raise _refusal(row, office)
            # The day may have been planned under other hours than today's: use its window.
            window = await conn.fetchrow(queries["window_at"], office.id, req.date, start)
        if window is None:
            raise errors.NotBookable(f"no window starts at {req.start} on {req.date}")
        ends_at = window["ends_at"]
    raise errors.NotBookable(f"no window starts at {req.start} on {req.date}")


def _refusal(row: asyncpg.Record, office: Office) -> errors.DomainError:
    verdict = row["verdict"]
    if verdict == "claim_lost":  # a retry took the key over when this request's lease lapsed
        return errors.IdempotencyInProgress()
    if verdict == "closed":
        return errors.NotBookable("the office is closed that day")
    if verdict == "blocked":
        return errors.PersonBlocked(instant(row["blocked_until"], office.tz) or "")
    if verdict == "phone":
        return errors.PhoneBoundToOtherPerson()
    if verdict == "active":
        return errors.ActiveBookingExists(row["active_booking_id"])
    if verdict == "daily":
        return errors.DailyLimitReached()
    return errors.SlotFull()


# ---------------------------------------------------------------- reading


async def get(rt: Runtime, booking_id: str) -> BookingOut:
    async with connection(rt.pool) as conn:
        row = await conn.fetchrow(queries["booking_by_id"], booking_id)
    if row is None:
        raise errors.NotFound(f"no booking {booking_id!r}")
    return await _render(rt, row)


async def _render(rt: Runtime, row: asyncpg.Record) -> BookingOut:
    office = await rt.catalog.office(row["office_id"])
    return render_booking(row, office.tz)


async def render_rows(rt: Runtime, rows: list[asyncpg.Record]) -> list[BookingOut]:
    return [await _render(rt, r) for r in rows]


async def search_by_identity(rt: Runtime, id_type: str, id_number: str) -> list[BookingOut]:
    id_hmac = people.identity_hmac(rt.settings.pii_key.get(), id_type, id_number)
    async with connection(rt.pool) as conn:
        rows = await conn.fetch(queries["search_by_identity"], id_hmac)
    return await render_rows(rt, rows)


async def search_by_reference(rt: Runtime, reference: str) -> list[BookingOut]:
    async with connection(rt.pool) as conn:
        rows = await conn.fetch(queries["search_by_reference"], reference)
    return await render_rows(rt, rows)


# ---------------------------------------------------------------- leaving `booked`


async def _locked(conn: asyncpg.Connection, booking_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(queries["booking_for_update"], booking_id)
    if row is None:
        raise errors.NotFound(f"no booking {booking_id!r}")
    return row


async def emit_event(
    conn: asyncpg.Connection,
    rt: Runtime,
    kind: str,
    booking_id: str,
    now: datetime,
    **extra: object,
) -> BookingOut:
    """Insert an event carrying the booking as it now is; returns that booking."""
    row = await conn.fetchrow(queries["booking_by_id"], booking_id)
    assert row is not None
    out = await _render(rt, row)
    await conn.execute(
        queries["insert_event"], kind, now, booking_id, row["day"], event_payload(out, **extra)
    )
    metrics.events_published.labels(kind).inc()
    return out


async def emit_blocked(
    conn: asyncpg.Connection, rt: Runtime, booking: BookingOut, until: datetime, now: datetime
) -> None:
    office = await rt.catalog.office(booking.office_id)
    person = {
        "id_type": booking.person.id_type,
        "id_number_masked": booking.person.id_number_masked,
        "blocked_until": instant(until, office.tz),
    }
    await conn.execute(
        queries["insert_event"],
        "person.blocked",
        now,
        booking.id,
        date.fromisoformat(booking.date),
        event_payload(booking, person=person),
    )
    metrics.events_published.labels("person.blocked").inc()


async def cancel_locked(
    conn: asyncpg.Connection,
    rt: Runtime,
    row: asyncpg.Record,
    by: str,
    reason: str,
    now: datetime,
) -> BookingOut:
    """Cancel a locked `booked` booking: status, seats, event, and any block it earns."""
    await conn.execute(queries["set_cancelled"], row["id"], now, by, reason)
    await conn.execute(queries["release_seats"], row["window_id"], row["party_size"])
    out = await emit_event(conn, rt, "booking.cancelled", row["id"], now)
    if by == "person":
        until = await people.block_after_cancellations(conn, row["person_id"], now, rt.settings)
        if until is not None:
            await emit_blocked(conn, rt, out, until, now)
    return out


async def give_back(rt: Runtime, rows: list[asyncpg.Record]) -> None:
    """After commit: the seats of bookings that left `booked` go back to the Redis gate."""
    for row in rows:
        await rt.counters.give(
            row["office_id"], row["day"], row["start_time"].strftime("%H:%M"), row["party_size"]
        )


async def cancel(rt: Runtime, booking_id: str, body: CancelIn, now: datetime) -> BookingOut:
    async def work(conn: asyncpg.Connection) -> tuple[BookingOut, asyncpg.Record | None]:
        row = await _locked(conn, booking_id)
        if row["status"] == "cancelled":
            return await _render(rt, row), None
        if row["status"] != "booked":
            raise errors.InvalidState(f"a {row['status']} booking cannot be cancelled")
        if body.by == "person":
            deadline = row["cancel_deadline"]
            if deadline is not None and now > deadline:
                office = await rt.catalog.office(row["office_id"])
                raise errors.CancelCutoffPassed(instant(deadline, office.tz) or "")
        return await cancel_locked(conn, rt, row, body.by, body.reason, now), row

    return await _leave_booked(rt, work)


async def _leave_booked(
    rt: Runtime,
    work: Callable[[asyncpg.Connection], Awaitable[tuple[BookingOut, asyncpg.Record | None]]],
) -> BookingOut:
    """Run a transition out of `booked`; after commit, its seats go back to the gate."""
    out, released = await in_transaction(rt.pool, work)
    if released is not None:
        await give_back(rt, [released])
    return out


async def check_in(rt: Runtime, booking_id: str, now: datetime) -> BookingOut:
    """The person arrived. They keep their seats: check-in opens before the window starts,
    and a seat freed then could be sold again while its holder sits in it."""

    async def work(conn: asyncpg.Connection) -> BookingOut:
        row = await _locked(conn, booking_id)
        if row["status"] == "checked_in":
            return await _render(rt, row)
        if row["status"] != "booked":
            raise errors.InvalidState(f"a {row['status']} booking cannot check in")
        opens = row["starts_at"] - timedelta(minutes=rt.settings.check_in_early_minutes)
        if not opens <= now <= row["ends_at"]:
            office = await rt.catalog.office(row["office_id"])
            raise errors.InvalidState(
                f"check-in is open from {instant(opens, office.tz)}"
                f" until {instant(row['ends_at'], office.tz)}"
            )
        number = await conn.fetchval(queries["next_ticket"], row["office_id"], row["day"])
        await conn.execute(queries["set_checked_in"], row["id"], now, f"A{number:03d}")
        return await emit_event(conn, rt, "booking.checked_in", row["id"], now)

    return await in_transaction(rt.pool, work)


async def reschedule(rt: Runtime, booking_id: str, body: RescheduleIn, now: datetime) -> BookingOut:
    """Move a booking to another window of its office and service, atomically."""
    async with connection(rt.pool) as conn:
        current = await conn.fetchrow(queries["booking_by_id"], booking_id)
    if current is None:
        raise errors.NotFound(f"no booking {booking_id!r}")
    if current["status"] != "booked":
        raise errors.InvalidState(f"a {current['status']} booking cannot be rescheduled")
    office = await rt.catalog.office(current["office_id"])
    service = await rt.catalog.service(current["service_id"])
    start = parse_start(body.start)
    party = current["party_size"]
    check_bookable(rt, office, service, body.date, start, party, now)
    if (body.date, start) == (current["day"], current["start_time"]):
        return render_booking(current, office.tz)
    await rt.ensure_opened(office, [body.date], now)

    gate = await rt.counters.take(office.id, body.date, body.start, party)
    if gate is Gate.FULL:
        raise errors.SlotFull()

    async def work(conn: asyncpg.Connection) -> tuple[BookingOut, asyncpg.Record]:
        row = await _locked(conn, booking_id)
        if row["status"] != "booked":
            raise errors.InvalidState(f"a {row['status']} booking cannot be rescheduled")
        window = await conn.fetchrow(queries["window_at"], office.id, body.date, start)
        if window is None:
            raise errors.NotBookable(f"no window starts at {body.start} on {body.date}")
        if window["closed"]:
            raise errors.NotBookable("the office is closed that day")
        if await conn.fetchval(queries["take_seats"], window["id"], party) is None:
            raise errors.SlotFull()
        await conn.execute(queries["release_seats"], row["window_id"], party)
        deadline = cancel_deadline(service, body.date, window["starts_at"], office)
        await conn.execute(queries["set_window"], row["id"], window["id"], body.date, deadline)
        return await emit_event(conn, rt, "booking.rescheduled", row["id"], now), row

    try:
        out, old = await in_transaction(rt.pool, work)
    except BaseException as exc:
        await _compensate(rt, gate, exc, office.id, body.date, body.start, party)
        raise
    finally:
        if gate is Gate.MISSING:
            refill_soon(rt, office.id, body.date)
    await give_back(rt, [old])
    return out


# ---------------------------------------------------------------- people


async def standing(rt: Runtime, id_type: str, id_number: str, now: datetime) -> Standing:
    id_hmac = people.identity_hmac(rt.settings.pii_key.get(), id_type, id_number)
    async with connection(rt.pool) as conn:
        person = await conn.fetchrow(queries["person_by_identity"], id_hmac)
        if person is None:
            return Standing(no_shows=0, cancellations=0, blocked_until=None, active_bookings=[])
        no_shows = await conn.fetchrow(
            queries["no_show_count"], person["id"], people.no_show_since(now, rt.settings)
        )
        cancels = await conn.fetchrow(
            queries["cancellation_count"], person["id"], people.cancel_since(now, rt.settings)
        )
        active = await conn.fetch(queries["active_bookings_of"], person["id"])
    assert no_shows is not None
    assert cancels is not None
    blocked = person["blocked_until"]
    return Standing(
        no_shows=no_shows["n"],
        cancellations=cancels["n"],
        blocked_until=instant(blocked, rt.tz) if blocked and blocked > now else None,
        active_bookings=await render_rows(rt, active),
    )


async def unblock(rt: Runtime, id_type: str, id_number: str, now: datetime) -> None:
    id_hmac = people.identity_hmac(rt.settings.pii_key.get(), id_type, id_number)
    async with connection(rt.pool) as conn:
        found = await conn.fetchval(queries["unblock_person"], id_hmac, now)
    if found is None:
        raise errors.NotFound("no such person")
