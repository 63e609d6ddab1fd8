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
    row = await conn.fetchrow(queries["no_show_count"], person_id, no_show_since(now, settings))
    assert row is not None
    if row["n"] < settings.no_show_block_count:
        return None
    until = row["last"] + timedelta(days=settings.no_show_block_days)
    return await _block(conn, person_id, until, now)


async def block_after_cancellations(
    conn: asyncpg.Connection, person_id: int, now: datetime, settings: Settings
) -> datetime | None:
    row = await conn.fetchrow(queries["cancellation_count"], person_id, cancel_since(now, settings))
    assert row is not None
    if row["n"] < settings.cancel_block_count:
        return None
    until = row["last"] + timedelta(hours=settings.cancel_block_hours)
    return await _block(conn, person_id, until, now)


async def _block(
    conn: asyncpg.Connection, person_id: int, until: datetime, now: datetime
) -> datetime | None:
    if until <= now:
        return None
    changed: datetime | None = await conn.fetchval(queries["block_person"], person_id, until)
    return changed
