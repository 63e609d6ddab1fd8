"""People: identity kept as HMAC + masked form, no-show and cancellation blocks, standing,
unblock, and a no-show waived on proof."""

from __future__ import annotations

import functools
import hashlib
import hmac
from datetime import datetime, timedelta

import asyncpg

from . import errors, events
from .config import Settings
from .db import connection, in_transaction, queries
from .models import BookingOut, Standing, WaiveIn
from .render import bookings as render_bookings
from .render import instant
from .runtime import Runtime


def identity_hmac(key: str, id_type: str, id_number: str) -> bytes:
    return _hmac(key, f"id:{id_type}:{id_number}".encode())


def phone_hmac(key: str, phone: str) -> bytes:
    return _hmac(key, f"phone:{phone}".encode())


@functools.lru_cache(maxsize=8)
def _keyed(key: str) -> hmac.HMAC:
    return hmac.new(key.encode(), digestmod=hashlib.sha256)


def _hmac(key: str, message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under `key`: a copy of the key's HMAC, its key set up once (a
    booking computes two; a third of the time of a new HMAC each)."""
    mac = _keyed(key).copy()
    mac.update(message)
    return mac.digest()


def mask(id_number: str) -> str:
    """First 2 and last 3 characters kept, the rest `*` (at least one `*` always)."""
    if len(id_number) <= 5:
        return id_number[:1] + "*" * (len(id_number) - 1)
    return id_number[:2] + "*" * (len(id_number) - 5) + id_number[-3:]


def no_show_since(now: datetime, settings: Settings) -> datetime:
    return now - timedelta(days=settings.no_show_window_days)


def cancel_since(now: datetime, settings: Settings) -> datetime:
    return now - timedelta(days=settings.cancel_window_days)


async def block_after_no_shows(
    conn: asyncpg.Connection, person_id: int, now: datetime, settings: Settings
) -> datetime | None:
    """Block when the person reached the no-show count; returns the new block end."""
    return await _block_after(
        conn,
        "no_show_count",
        person_id,
        no_show_since(now, settings),
        settings.no_show_block_count,
        timedelta(days=settings.no_show_block_days),
        now,
    )


async def block_after_cancellations(
    conn: asyncpg.Connection, person_id: int, now: datetime, settings: Settings
) -> datetime | None:
    """Block when the person cancelled too often; returns the new block end."""
    return await _block_after(
        conn,
        "cancellation_count",
        person_id,
        cancel_since(now, settings),
        settings.cancel_block_count,
        timedelta(hours=settings.cancel_block_hours),
        now,
    )


async def _block_after(
    conn: asyncpg.Connection,
    count_query: str,
    person_id: int,
    since: datetime,
    threshold: int,
    duration: timedelta,
    now: datetime,
) -> datetime | None:
    """`threshold` events since `since` block for `duration` after the last of them."""
    row = await conn.fetchrow(queries[count_query], person_id, since)
    assert row is not None
    if row["n"] < threshold:
        return None
    until: datetime = row["last"] + duration
    if until <= now:
        return None
    changed: datetime | None = await conn.fetchval(queries["block_person"], person_id, until)
    return changed


async def recompute_block(
    conn: asyncpg.Connection, person_id: int, now: datetime, settings: Settings
) -> None:
    """The person's block as the no-shows and cancellations that still count make it now: a
    block with too few of them behind it ends at once (a no-show waived)."""
    ends: list[datetime] = []
    last = await conn.fetchval(
        queries["no_show_block_last"],
        person_id,
        settings.no_show_window_days,
        settings.no_show_block_count,
    )
    if last is not None:
        ends.append(last + timedelta(days=settings.no_show_block_days))
    cancels = await conn.fetchrow(
        queries["cancellation_count"], person_id, cancel_since(now, settings)
    )
    assert cancels is not None
    if cancels["n"] >= settings.cancel_block_count:
        ends.append(cancels["last"] + timedelta(hours=settings.cancel_block_hours))
    until = max((end for end in ends if end > now), default=None)
    await conn.execute(queries["lower_block"], person_id, until)


async def waive_no_show(rt: Runtime, booking_id: str, body: WaiveIn, now: datetime) -> BookingOut:
    """Staff accepted the person's proof: the no-show stops counting, its block is recomputed
    in the same transaction, and `booking.no_show_waived` is emitted. Again: no change."""

    async def work(conn: asyncpg.Connection) -> BookingOut:
        if await conn.fetchval(queries["lock_booking"], booking_id) is None:
            raise errors.NotFound(f"no booking {booking_id!r}")
        row = await conn.fetchrow(queries["booking_by_id"], booking_id)
        assert row is not None
        if row["status"] != "no_show":
            raise errors.InvalidState(f"a {row['status']} booking has no no-show to waive")
        if row["no_show_waived_at"] is not None:
            return (await render_bookings(rt.catalog, [row]))[0]
        await conn.execute(queries["set_no_show_waived"], booking_id, now, body.reason)
        await recompute_block(conn, row["person_id"], now, rt.settings)
        return await events.emit(conn, rt, "booking.no_show_waived", booking_id, now)

    return await in_transaction(rt.pool, work)


# ---------------------------------------------------------------- standing


async def standing(rt: Runtime, id_type: str, id_number: str, now: datetime) -> Standing:
    """Counts within the policy windows, any block still running, and the active bookings."""
    id_hmac = identity_hmac(rt.settings.pii_key.get(), id_type, id_number)
    async with connection(rt.pool) as conn:
        person = await conn.fetchrow(queries["person_by_identity"], id_hmac)
        if person is None:
            return Standing(no_shows=0, cancellations=0, blocked_until=None, active_bookings=[])
        no_shows = await conn.fetchrow(
            queries["no_show_count"], person["id"], no_show_since(now, rt.settings)
        )
        cancels = await conn.fetchrow(
            queries["cancellation_count"], person["id"], cancel_since(now, rt.settings)
        )
        active = await conn.fetch(queries["active_bookings_of"], person["id"])
    assert no_shows is not None
    assert cancels is not None
    blocked = person["blocked_until"]
    return Standing(
        no_shows=no_shows["n"],
        cancellations=cancels["n"],
        blocked_until=instant(blocked, rt.tz) if blocked and blocked > now else None,
        active_bookings=await render_bookings(rt.catalog, active),
    )


async def unblock(rt: Runtime, id_type: str, id_number: str, now: datetime) -> None:
    """Lift a person's block (the counts before now no longer count towards a new one)."""
    id_hmac = identity_hmac(rt.settings.pii_key.get(), id_type, id_number)
    async with connection(rt.pool) as conn:
        found = await conn.fetchval(queries["unblock_person"], id_hmac, now)
    if found is None:
        raise errors.NotFound("no such person")
