"""People: identity kept as HMAC + masked form, no-show and cancellation blocks, standing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

import asyncpg

from .config import Settings
from .db import queries


def identity_hmac(key: str, id_type: str, id_number: str) -> bytes:
    return hmac.new(key.encode(), f"id:{id_type}:{id_number}".encode(), hashlib.sha256).digest()


def phone_hmac(key: str, phone: str) -> bytes:
    return hmac.new(key.encode(), f"phone:{phone}".encode(), hashlib.sha256).digest()


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
