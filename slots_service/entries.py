"""Entries into a draw (API 1.1): one per identity, person and members alike, per office and
date, taken from `entries_open` on the evening before the day opens until its draw.

Postgres is the arbiter of that uniqueness (entry_identities); the gate keeps a hint of each
identity's entry, so that a repeat, however often a bot sends it, is answered 409
`entry_exists` by one Redis read. A lost hint only costs the repeat a question to Postgres.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import msgspec

from . import booking, draw, errors, idempotency, metrics, party
from .catalog import Office
from .db import connection, in_transaction, one, queries
from .horizon import entries_open_at, open_day, opens_at, released_by_draw
from .idempotency import Claim
from .models import EntryIn, EntryOut
from .render import instant
from .runtime import Runtime
from .seats import counters_ttl

_decoder = msgspec.json.Decoder(EntryOut)
_encode = msgspec.json.Encoder().encode


def new_id() -> str:
    return "E" + booking.new_booking_id()[1:]


def _hint_key(office_id: str, day: date) -> str:
    return f"entries:{{{office_id}:{day.isoformat()}}}"


def _hint_field(id_hmac: bytes) -> str:
    return id_hmac[:12].hex()


async def enter(
    rt: Runtime, body: EntryIn, now: datetime, keyed: idempotency.Keyed | None
) -> EntryOut:
    office = await rt.catalog.office(body.office_id)
    service = await rt.catalog.service(body.service_id)
    day = body.date
    if office.lottery is None or not released_by_draw(office, day, rt.settings, now):
        raise errors.EntriesClosed(f"{office.id} does not release {day} by lottery")
    draw_at = opens_at(day, office.tz, rt.settings)
    opens = entries_open_at(office, day, rt.settings)
    if not opens <= now < draw_at:
        raise errors.EntriesClosed(
            f"entries for {day} are taken from {instant(opens, office.tz)}"
            f" until {instant(draw_at, office.tz)}"
        )
    choices = body.choices
    if not 1 <= len(choices) <= office.lottery.max_choices or len(set(choices)) != len(choices):
        raise errors.NotBookable(
            f"choices are 1 to {office.lottery.max_choices} distinct window starts"
        )
    order = booking.order_of(
        rt.settings, office, service, body, day, booking.parse_start(choices[0])
    )
    booking.check_signup(rt.settings, order)
    everyone = [order.who.id_hmac, *(m.id_hmac for m in order.members)]
    if keyed is None:  # a repeat: one Redis read (a retry with its key gets its first answer)
        for id_hmac in everyone:
            hinted = await rt.counters.recall(_hint_key(office.id, day), _hint_field(id_hmac))
            if hinted is not None:
                metrics.entries.labels("repeat").inc()
                raise errors.EntryExists(hinted)

    async def work(held: Claim | None) -> EntryOut:
        async def inside(conn: asyncpg.Connection) -> EntryOut:
            await draw.make_record(conn, rt, office, day)
            # Held to the commit: a draw starting now waits for this entry, and an entry
            # after a draw's lock finds the day drawn.
            if await conn.fetchval(queries["release_share"], office.id, day) is not None:
                raise errors.EntriesClosed(f"the draw of {day} has run")
            await _check_choices(conn, office, day, choices, now)
            found = await conn.fetchval(queries["entry_of_identities"], office.id, day, everyone)
            if found is not None:
                raise errors.EntryExists(found)
            await booking.check_person_rules(conn, rt.settings, order, now)
            entry_id = new_id()
            await conn.execute(
                queries["entry_insert"],
                entry_id,
                office.id,
                service.id,
                day,
                choices,
                body.party_size,
                *order.kept(),
                body.waitlist,
                now,
            )
            await conn.execute(
                queries["entry_identities_insert"], office.id, day, entry_id, everyone
            )
            row = await one(conn, "entry_by_id", entry_id)
            out = draw.render_entry(row, office, draw_at)
            await idempotency.store(conn, held, _encode(out))
            return out

        try:
            return await in_transaction(rt.pool, inside)
        except errors.EntryExists as exc:
            if exc.extra["entry_id"] is not None:
                raise
        async with connection(rt.pool) as conn:  # a race the unique key caught: name the entry
            found = await conn.fetchval(queries["entry_of_identities"], office.id, day, everyone)
        raise errors.EntryExists(found)

    try:
        out = await idempotency.run_keyed(
            rt.pool, keyed, now, rt.settings.idempotency_lease_s, work, _decoder
        )
    except errors.EntryExists as exc:
        metrics.entries.labels("repeat").inc()
        # Alone, the identity holds that entry; in a party, it may be a member's.
        if exc.extra["entry_id"] is not None and len(everyone) == 1:
            await _hint(rt, office, day, everyone, str(exc.extra["entry_id"]), now)
        raise
    except errors.DomainError:
        metrics.entries.labels("refused").inc()
        raise
    await _hint(rt, office, day, everyone, out.id, now)
    metrics.entries.labels("entered").inc()
    return out


async def _hint(
    rt: Runtime, office: Office, day: date, everyone: list[bytes], entry_id: str, now: datetime
) -> None:
    ttl = counters_ttl(day, now)
    for id_hmac in everyone:
        await rt.counters.remember(_hint_key(office.id, day), _hint_field(id_hmac), entry_id, ttl)


async def _check_choices(
    conn: asyncpg.Connection, office: Office, day: date, choices: list[str], now: datetime
) -> None:
    """Every choice is a window of the day (planned now if it was not yet: its windows are
    then kept for the draw, whatever later happens to the hours)."""
    await open_day(conn, office.id, office.tz, office.hours, office.window_minutes, day, now)
    windows = {w["start"]: w for w in await conn.fetch(queries["day_windows"], office.id, day)}
    if not windows or all(w["closed"] for w in windows.values()):
        raise errors.NotBookable(f"{office.id} is not open on {day}")
    unknown = [c for c in choices if c not in windows or windows[c]["closed"]]
    if unknown:
        raise errors.NotBookable(f"no window of {day} starts at {', '.join(unknown)}")


async def get(rt: Runtime, entry_id: str) -> EntryOut:
    async with connection(rt.pool) as conn:
        row = await conn.fetchrow(queries["entry_by_id"], entry_id)
    if row is None:
        raise errors.NotFound(f"no entry {entry_id!r}")
    return draw.render_entry(row, await rt.catalog.office(row["office_id"]), row["draw_at"])


async def withdraw(rt: Runtime, entry_id: str, now: datetime) -> EntryOut:
    """`entered` -> `withdrawn`; withdrawn again changes nothing; drawn ones stay as drawn."""

    async def work(conn: asyncpg.Connection) -> tuple[asyncpg.Record, bool]:
        status = await conn.fetchval(queries["entry_lock"], entry_id)
        if status is None:
            raise errors.NotFound(f"no entry {entry_id!r}")
        if status in ("won", "lost"):
            raise errors.InvalidState(f"a {status} entry cannot be withdrawn")
        if status == "entered":
            await conn.execute(queries["entry_withdraw"], entry_id)
        row = await one(conn, "entry_by_id", entry_id)
        return row, status == "entered"

    row, changed = await in_transaction(rt.pool, work)
    if changed:
        metrics.entries.labels("withdrawn").inc()
        members = party.from_stored(row["members"])
        for id_hmac in (row["id_hmac"], *(m.id_hmac for m in members)):
            await rt.counters.forget(_hint_key(row["office_id"], row["day"]), _hint_field(id_hmac))
    return draw.render_entry(row, await rt.catalog.office(row["office_id"]), row["draw_at"])
