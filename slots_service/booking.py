"""Book, cancel, reschedule, check in, read: the rules of a booking, no HTTP.

The path of a booking: validate against the cached office and service, take the seats at
the Redis gate (`seats.py`), then one Postgres statement decides (queries.sql `book`). Redis
is only asked first; whatever it says, Postgres is what makes a booking, so every path here
stays correct when Redis lost data, restarted, or is unreachable. Every function returns the
booking as the API shows it, or raises the domain error that refused it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import NamedTuple, Protocol

import asyncpg
import msgspec
from msgspec import UnsetType

from . import errors, events, idempotency, metrics, party, people
from .book_params import BookParams, book_args
from .catalog import Office, Service
from .config import Settings
from .counters import Gate
from .db import connection, in_transaction, queries, translate, translated
from .horizon import horizon, local_today
from .idempotency import Claim
from .models import (
    BookingIn,
    BookingOut,
    DayBefore,
    HoursBefore,
    PersonIn,
    PersonOut,
    minutes,
)
from .render import bookings as render_bookings
from .render import event_payload, hhmm, instant, window_instant
from .runtime import Runtime

_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: 5 bits each
_ID_LENGTH = 14  # 70 random bits
_ID_SYMBOLS = bytes(ord(_ID_ALPHABET[b & 31]) for b in range(256))  # byte -> its symbol
_encode = msgspec.json.Encoder().encode


def new_booking_id() -> str:
    """14 symbols of 32 from one read of the system's random source (256 % 32 == 0: unbiased)."""
    return secrets.token_bytes(_ID_LENGTH).translate(_ID_SYMBOLS).decode()


def parse_start(hhmm_text: str) -> time:
    m = minutes(hhmm_text)
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


def check_bookable(
    settings: Settings,
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
    first, last = horizon(now, office.tz, settings)
    if not first <= day <= last:
        raise errors.NotBookable(f"{day} is outside the booking horizon {first}..{last}")
    starts_at = datetime.combine(day, start, office.tz)
    if starts_at <= now:
        raise errors.NotBookable("the window has already started")
    return starts_at


# ---------------------------------------------------------------- book


class Who(NamedTuple):
    """The person a booking is for, as the service keeps them: HMAC and masked number."""

    id_hmac: bytes
    id_type: str
    id_masked: str
    name: str
    phone_hmac: bytes | None  # None: phones are not bound to identities

    def out(self) -> PersonOut:
        return PersonOut(id_type=self.id_type, id_number_masked=self.id_masked, name=self.name)


def who_of(settings: Settings, person: PersonIn) -> Who:
    key = settings.pii_key.get()
    return Who(
        id_hmac=people.identity_hmac(key, person.id_type, person.id_number),
        id_type=person.id_type,
        id_masked=people.mask(person.id_number),
        name=person.name,
        phone_hmac=(
            people.phone_hmac(key, person.phone) if settings.one_phone_per_identity else None
        ),
    )


class Order(NamedTuple):
    """What a booking is made of, whoever asks for it: a request, a draw's entry, a waiting
    entry offered freed seats."""

    office: Office
    service: Service
    day: date
    start: time
    party_size: int
    who: Who
    members: tuple[party.Member, ...]
    channel: str
    reference: str | None
    metadata: dict[str, str]
    notice_accepted: bool

    @property
    def start_text(self) -> str:
        return hhmm(self.start)

    def kept(self) -> tuple[object, ...]:
        """Who and how, as an entry (of a draw, of the waitlist) keeps them until its booking is
        made: id_hmac, id_type, id_masked, name, phone_hmac, members, channel, reference,
        metadata, notice_accepted (the order of those columns in entries and waitlist)."""
        who = self.who
        return (
            *(who.id_hmac, who.id_type, who.id_masked, who.name, who.phone_hmac),
            party.stored(self.members),
            *(self.channel, self.reference, self.metadata, self.notice_accepted),
        )


class Asked(party.Party, Protocol):
    """A request for seats: a booking, an entry into a draw, a waiting entry."""

    @property
    def channel(self) -> str: ...
    @property
    def reference(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, str]: ...
    @property
    def notice_accepted(self) -> bool | UnsetType: ...


def order_of(
    settings: Settings, office: Office, service: Service, req: Asked, day: date, start: time
) -> Order:
    """The order a request asks for, its person kept as the service keeps people."""
    return Order(
        office=office,
        service=service,
        day=day,
        start=start,
        party_size=req.party_size,
        who=who_of(settings, req.person),
        members=party.members_of(settings, req),
        channel=req.channel,
        reference=req.reference,
        metadata=req.metadata,
        notice_accepted=req.notice_accepted is True,
    )


def stored_order(
    office: Office, service: Service, row: asyncpg.Record, day: date, start: time
) -> Order:
    """The order an entry (of a draw or the waitlist) keeps, for one window."""
    return Order(
        office=office,
        service=service,
        day=day,
        start=start,
        party_size=row["party_size"],
        who=Who(row["id_hmac"], row["id_type"], row["id_masked"], row["name"], row["phone_hmac"]),
        members=party.from_stored(row["members"]),
        channel=row["channel"],
        reference=row["reference"],
        metadata=row["metadata"],
        notice_accepted=row["notice_accepted"],
    )


def check_signup(settings: Settings, order: Order) -> None:
    """The rules of a booking that need no database and no window, for an entry into a draw
    or the waitlist."""
    service, office = order.service, order.office
    if service.id not in office.services:
        raise errors.NotBookable(f"service {service.id!r} is not offered at {office.id!r}")
    if order.party_size > service.max_party_size:
        raise errors.NotBookable(f"party_size is at most {service.max_party_size} here")
    if service.requires_reference and not order.reference:
        raise errors.NotBookable(f"service {service.id!r} requires a reference")
    if service.notice_required and not order.notice_accepted:
        raise errors.NotBookable(
            f"service {service.id!r} requires its notice accepted (notice_accepted: true)"
        )


async def check_person_rules(
    conn: asyncpg.Connection, settings: Settings, order: Order, now: datetime
) -> None:
    """The person rules at an entry into a draw or the waitlist, for everyone of the party:
    blocked, a booking of the service held, the rebook cooldown, a phone of another identity.
    (The daily limit is a rule of the day a booking is made: the draw or the offer checks it.)"""
    who = order.who
    if who.phone_hmac is not None and await conn.fetchval(
        queries["phone_owner"], who.phone_hmac, who.id_hmac
    ):
        raise errors.PhoneBoundToOtherPerson()
    found = await conn.fetchrow(
        queries["party_verdict"],
        [who.id_hmac, *(m.id_hmac for m in order.members)],
        order.service.id,
        local_today(now, order.office.tz),
        2**31 - 1,
        settings.active_bookings_per_service,
        now,
        settings.rebook_cooldown_minutes,
    )
    if found is not None:
        raise refused(found, order.office)


def check_order(settings: Settings, order: Order, now: datetime) -> datetime:
    """Every rule of a booking that needs no database; returns the window's start instant."""
    service = order.service
    if service.requires_reference and not order.reference:
        raise errors.NotBookable(f"service {service.id!r} requires a reference")
    if service.notice_required and not order.notice_accepted:
        raise errors.NotBookable(
            f"service {service.id!r} requires its notice accepted (notice_accepted: true)"
        )
    return check_bookable(
        settings, order.office, service, order.day, order.start, order.party_size, now
    )


async def book(
    rt: Runtime, req: BookingIn, now: datetime, keyed: idempotency.Keyed | None = None
) -> BookingOut:
    """Make a booking, or with an Idempotency-Key seen before, give the first answer again.
    Refusals raise their domain error (and are kept for the key)."""
    try:
        made = await _book(rt, req, now, keyed)
    except errors.DomainError as exc:
        metrics.child(metrics.bookings, exc.code).inc()
        raise
    except BaseException:
        metrics.child(metrics.bookings, "error").inc()
        raise
    return made


async def _book(
    rt: Runtime, req: BookingIn, now: datetime, keyed: idempotency.Keyed | None
) -> BookingOut:
    office = await rt.catalog.office(req.office_id)
    service = await rt.catalog.service(req.service_id)
    order = order_of(rt.settings, office, service, req, req.date, parse_start(req.start))
    starts_at = check_order(rt.settings, order, now)
    draw_at = await rt.days.draw_pending(office, req.date, now)
    if draw_at is not None:
        raise errors.DrawPending(instant(draw_at, office.tz) or "")
    await rt.days.ensure_opened(office, [req.date], now)
    attempts = (order.who.id_hmac[:12].hex(), rt.settings.rate_limit_per_person_per_minute, 60)
    once = None if keyed is None else (idempotency.mark(keyed), rt.settings.idempotency_lease_s)
    gate = await rt.seats.take(office.id, req.date, req.start, req.party_size, attempts, once)
    if gate is Gate.FULL:  # the crowd's answer: Postgres is asked nothing but the key, if any
        refusal = errors.SlotFull()
        if keyed is not None:
            lease_s = rt.settings.idempotency_lease_s
            replayed = await idempotency.refuse(rt.pool, keyed, refusal, now, lease_s)
            if replayed is not None:
                return replayed
        raise refusal
    run = _Run(rt, order, starts_at, now, None)
    try:
        return await _claim_and_record(run, gate, keyed)
    finally:
        rt.seats.settle(gate, office.id, req.date)


async def _claim_and_record(run: _Run, gate: Gate, keyed: idempotency.Keyed | None) -> BookingOut:
    rt, order, now = run.rt, run.order, run.now
    seat = (order.office.id, order.day, order.start_text, order.party_size)
    if keyed is not None:
        try:
            found = await idempotency.claim(rt.pool, keyed, now, rt.settings.idempotency_lease_s)
        except BaseException:  # the key answers instead (kept, or running): nothing booked
            await rt.seats.untake(gate, *seat)
            raise
        if isinstance(found, BookingOut):  # booked before: this take goes back
            await rt.seats.untake(gate, *seat)
            return found
        run = run._replace(held=found)
    try:
        return await _record(run)
    except BaseException as exc:
        await rt.seats.compensate(gate, exc, *seat)
        if run.held is not None:
            if isinstance(exc, errors.DomainError) and idempotency.kept(exc):
                await idempotency.finish(rt.pool, run.held, exc)
            else:
                await idempotency.release(rt.pool, run.held)
        raise


async def _record(run: _Run) -> BookingOut:
    """The booking statement: for a person alone, decided with the other plain bookings of the
    moment in one transaction (group_commit.py); for a party with members, in a transaction of
    its own after every identity of the party was locked and the members checked."""
    pool = run.rt.pool
    if not run.order.members:
        with translated():
            return await _named(pool, run, _decide(pool, run, _grouped(run.rt)))
    async with connection(pool) as conn:
        return await _named(conn, run, _party_transaction(conn, run))


# How a `book` statement is run: in the caller's transaction, or with the plain bookings of
# the moment (group commit). Both give the statement's row, or raise its driver error.
_Decide = Callable[[BookParams], Awaitable[asyncpg.Record]]
# Where the few look-ups around the statement go: the caller's transaction, or the pool.
_Reader = asyncpg.Connection | asyncpg.Pool


def _grouped(rt: Runtime) -> _Decide:
    async def decide(params: BookParams) -> asyncpg.Record:
        row = await rt.bookings.decide(
            (params.office_id, params.day, params.start_time), distinct(params), params, _alone
        )
        if row is not None:
            return row
        # its batch rolled back whole: decided alone
        async with connection(rt.pool) as conn:
            return await _alone(conn, params)

    return decide


def _in(conn: asyncpg.Connection) -> _Decide:
    async def decide(params: BookParams) -> asyncpg.Record:
        return await _book_one(conn, params)

    return decide


def distinct(params: BookParams) -> tuple[object, ...]:
    """What no two bookings of one `book` statement share: their people, their phones."""
    return (params.id_hmac,) if params.phone_hmac is None else (params.id_hmac, params.phone_hmac)


async def _book_one(conn: asyncpg.Connection, params: BookParams) -> asyncpg.Record:
    """`book` for one booking (an array of one)."""
    row: asyncpg.Record | None = await conn.fetchrow(queries["book"], *book_args([params]))
    assert row is not None  # `book` answers one row per booking
    return row


async def _alone(conn: asyncpg.Connection, params: BookParams) -> asyncpg.Record:
    """`book` in a transaction of its own, once more if it raced for the person."""
    try:
        return await _book_one(conn, params)
    except (
        asyncpg.exceptions.NotNullViolationError,
        asyncpg.exceptions.UniqueViolationError,
    ) as exc:
        if not _raced_for_the_person(exc):
            raise
        # Decided again, the statement sees what the other one committed.
        return await _book_one(conn, params)


async def book_within(
    conn: asyncpg.Connection, rt: Runtime, order: Order, now: datetime
) -> BookingOut:
    """Book in the caller's transaction (a draw, a waitlist offer): the rules as
    `POST /v1/bookings` applies them, decided by the same statement; the seats are taken in
    Postgres only (the caller brings the gate in line after its commit). A refusal raises and
    leaves the caller's transaction as it was (a savepoint)."""
    starts_at = check_order(rt.settings, order, now)
    run = _Run(rt, order, starts_at, now, None)
    return await _named(conn, run, _party_transaction(conn, run))


async def _party_transaction(conn: asyncpg.Connection, run: _Run) -> BookingOut:
    async with conn.transaction():  # a savepoint inside the caller's transaction
        return await _in_party(conn, run)


async def _named(reader: _Reader, run: _Run, deciding: Awaitable[BookingOut]) -> BookingOut:
    """The decision, its driver errors as the domain errors they mean; an active booking that
    only a unique index met is looked up (once its transaction or savepoint is rolled back) and
    named in the refusal."""
    try:
        return await deciding
    except errors.DomainError as exc:
        refused = exc
    except asyncpg.PostgresError as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        refused = mapped
    if isinstance(refused, errors.ActiveBookingExists) and refused.extra["booking_id"] is None:
        found = await reader.fetchval(
            queries["active_booking_of"], run.order.who.id_hmac, run.order.service.id
        )
        raise errors.ActiveBookingExists(found) from None
    raise refused from None


async def _in_party(conn: asyncpg.Connection, run: _Run) -> BookingOut:
    """In a transaction: every identity of the order locked and the members checked, then the
    booking statement. The person's row locked first, no concurrent party can take it while
    the statement runs."""
    order, now = run.order, run.now
    who = order.who
    person = party.Member(who.id_hmac, who.id_type, who.id_masked, "")
    made_on = local_today(now, order.office.tz)
    found = await party.hold(
        conn, run.rt.settings, person, order.members, order.service.id, made_on, now
    )
    if found is not None:
        raise refused(found, order.office)
    made = await _decide(conn, run, _in(conn))
    if order.members:
        await party.record(conn, made.id, order.members)
    return made


async def _decide(reader: _Reader, run: _Run, decide: _Decide) -> BookingOut:
    """The booking statement; once more with the day's real window if the day was planned
    under other hours than today's."""
    order = run.order
    ends_at = run.starts_at + timedelta(minutes=order.office.window_minutes)
    made = await _statement(decide, run, ends_at)
    if made is not None:
        return made
    window = await reader.fetchrow(queries["window_at"], order.office.id, order.day, order.start)
    if window is not None and (made := await _statement(decide, run, window["ends_at"])):
        return made
    raise errors.NotBookable(f"no window starts at {order.start_text} on {order.day}")


class _Run(NamedTuple):
    """What one booking brings to its statement."""

    rt: Runtime
    order: Order
    starts_at: datetime
    now: datetime
    held: Claim | None


async def _statement(decide: _Decide, run: _Run, ends_at: datetime) -> BookingOut | None:
    """One run of `book`: the booking, None when no window has these times, else the
    refusal raised."""
    rt, order, starts_at, now, held = run
    office, service, who = order.office, order.service, order.who
    deadline = cancel_deadline(service, order.day, starts_at, office)
    out = BookingOut(
        id=new_booking_id(),
        status="booked",
        office_id=office.id,
        service_id=service.id,
        date=order.day.isoformat(),
        start=order.start_text,
        end=hhmm(ends_at.astimezone(office.tz).time()),
        starts_at=window_instant(starts_at, office.tz) or "",
        ends_at=window_instant(ends_at, office.tz) or "",
        party_size=order.party_size,
        person=who.out(),
        channel=order.channel,
        reference=order.reference,
        metadata=order.metadata,
        created_at=instant(now, office.tz) or "",
        cancel_deadline=window_instant(deadline, office.tz),
        cancelled_at=None,
        cancelled_by=None,
        cancel_reason=None,
        checked_in_at=None,
        ticket=None,
        members=[m.out() for m in order.members],
    )
    params = BookParams(
        office_id=office.id,
        day=order.day,
        start_time=order.start,
        end_time=ends_at.astimezone(office.tz).time(),
        party_size=order.party_size,
        id_hmac=who.id_hmac,
        id_type=who.id_type,
        id_masked=who.id_masked,
        phone_hmac=who.phone_hmac,
        booking_id=out.id,
        service_id=service.id,
        name=who.name,
        channel=order.channel,
        reference=order.reference,
        metadata=order.metadata,
        made_on=local_today(now, office.tz),
        bookings_per_day=rt.settings.bookings_per_day,
        active_per_service=rt.settings.active_bookings_per_service,
        now=now,
        cancel_deadline=deadline,
        event_payload=msgspec.Raw(event_payload(out)),
        api_key_hash=held.api_key_hash if held else None,
        idempotency_key=held.key if held else None,
        response=_encode(out) if held else None,
        claim_token=held.token if held else None,
        rebook_cooldown=rt.settings.rebook_cooldown_minutes,
        notice_accepted=order.notice_accepted,
    )
    row = await decide(params)
    if row["booking_id"] is not None:
        metrics.child(metrics.bookings, "created").inc()
        metrics.child(metrics.events_published, "booking.created").inc()
        return out
    if row["verdict"] == "no_window":
        return None
    raise refused(row, office)


def _raced_for_the_person(exc: asyncpg.PostgresError) -> bool:
    """The statement met another one making the same new person at the same moment:
    - a party booking took the person while it waited for their row (`who` found no row to
      update: a NULL person_id);
    - a plain booking of the same new person inserted their row, phone and all, between this
      statement's check of the identity (ON CONFLICT's arbiter) and its own insert: the phone's
      unique index, which ON CONFLICT does not arbitrate, reports the other's row as another
      identity holding the phone."""
    if isinstance(exc, asyncpg.exceptions.NotNullViolationError):
        return exc.column_name == "person_id"
    return getattr(exc, "constraint_name", None) == "people_phone_bound"


def refused(found: asyncpg.Record, office: Office) -> errors.DomainError:
    """A verdict row (the booking statement's, or a party's) as the error a caller reads."""
    return refusal(
        found["verdict"],
        found["blocked_until"],
        found["active_booking_id"],
        office,
        found["retry_at"],
    )


def refusal(
    verdict: str,
    blocked_until: datetime | None,
    active_booking_id: str | None,
    office: Office,
    retry_at: datetime | None = None,
) -> errors.DomainError:
    """The booking statement's verdict as the error a caller reads."""
    if verdict == "claim_lost":  # a retry took the key over when this request's lease lapsed
        return errors.IdempotencyInProgress()
    if verdict == "closed":
        return errors.NotBookable("the office is closed that day")
    if verdict == "blocked":
        return errors.PersonBlocked(instant(blocked_until, office.tz) or "")
    if verdict == "phone":
        return errors.PhoneBoundToOtherPerson()
    if verdict == "active":
        return errors.ActiveBookingExists(active_booking_id)
    if verdict == "cooldown":
        return errors.RebookCooldown(instant(retry_at, office.tz) or "")
    if verdict == "daily":
        return errors.DailyLimitReached()
    return errors.SlotFull()


# ---------------------------------------------------------------- reading


async def get(rt: Runtime, booking_id: str) -> BookingOut:
    async with connection(rt.pool) as conn:
        row = await conn.fetchrow(queries["booking_by_id"], booking_id)
    if row is None:
        raise errors.NotFound(f"no booking {booking_id!r}")
    return (await render_bookings(rt.catalog, [row]))[0]


async def search_by_identity(rt: Runtime, id_type: str, id_number: str) -> list[BookingOut]:
    id_hmac = people.identity_hmac(rt.settings.pii_key.get(), id_type, id_number)
    async with connection(rt.pool) as conn:
        rows = await conn.fetch(queries["search_by_identity"], id_hmac)
    return await render_bookings(rt.catalog, rows)


async def search_by_reference(rt: Runtime, reference: str) -> list[BookingOut]:
    async with connection(rt.pool) as conn:
        rows = await conn.fetch(queries["search_by_reference"], reference)
    return await render_bookings(rt.catalog, rows)


# ---------------------------------------------------------------- leaving `booked`


async def locked(conn: asyncpg.Connection, booking_id: str) -> asyncpg.Record:
    """The booking, locked to the end of the transaction, as it is once the lock is held."""
    if await conn.fetchval(queries["lock_booking"], booking_id) is None:
        raise errors.NotFound(f"no booking {booking_id!r}")
    row = await conn.fetchrow(queries["booking_by_id"], booking_id)
    assert row is not None  # locked: nothing can delete it now
    return row


async def check_in(rt: Runtime, booking_id: str, now: datetime) -> BookingOut:
    """The person arrived. They keep their seats: check-in opens before the window starts,
    and a seat freed then could be sold again while its holder sits in it."""

    async def work(conn: asyncpg.Connection) -> BookingOut:
        row = await locked(conn, booking_id)
        if row["status"] == "checked_in":
            return (await render_bookings(rt.catalog, [row]))[0]
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
        return await events.emit(conn, rt, "booking.checked_in", row["id"], now)

    return await in_transaction(rt.pool, work)
