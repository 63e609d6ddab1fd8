"""Idempotency-Key: the first response to a key is kept 24 h and replayed to retries.

Keys are scoped per API key. The first request claims the key (a row with no status yet);
a concurrent duplicate gets `idempotency_in_progress`; a retry with another body gets
`idempotency_key_reused`. A booking stores its response in the booking's own statement, so
an acknowledged booking and its replay can never disagree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from . import errors
from .db import connection, queries

# A claim whose request died without an answer (process killed) is taken over after this.
_STALE_CLAIM = timedelta(seconds=60)


@dataclass(frozen=True)
class Claim:
    api_key_hash: bytes
    key: str


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= 255 or not all(0x20 <= ord(c) < 0x7F for c in key):
        raise errors.InvalidRequest("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def request_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


@dataclass(frozen=True)
class Keyed:
    """A request that carries an Idempotency-Key."""

    api_key_hash: bytes
    key: str
    body_hash: bytes
    keep: timedelta


async def claim(pool: asyncpg.Pool, keyed: Keyed, now: datetime) -> Claim | Replay:
    """Own the key for this request, or learn what to answer instead (a replay, or
    `idempotency_key_reused` / `idempotency_in_progress` raised)."""
    api_key_hash, key, body_hash = keyed.api_key_hash, keyed.key, keyed.body_hash
    async with connection(pool) as conn:
        if await conn.fetchval(queries["idem_claim"], api_key_hash, key, body_hash, now):
            return Claim(api_key_hash, key)
        row = await conn.fetchrow(queries["idem_get"], api_key_hash, key)
        if row is None:  # purged between the two statements: try once more
            if await conn.fetchval(queries["idem_claim"], api_key_hash, key, body_hash, now):
                return Claim(api_key_hash, key)
            raise errors.IdempotencyInProgress()
        expired = row["created_at"] < now - keyed.keep
        stale = row["status"] is None and row["created_at"] < now - _STALE_CLAIM
        if expired or (stale and row["request_hash"] == body_hash):
            taken = await conn.fetchval(
                queries["idem_take_over"], api_key_hash, key, body_hash, now, row["created_at"]
            )
            if taken:
                return Claim(api_key_hash, key)
            raise errors.IdempotencyInProgress()
        if row["request_hash"] != body_hash:
            raise errors.IdempotencyKeyReused()
        if row["status"] is None:
            raise errors.IdempotencyInProgress()
        return Replay(row["status"], bytes(row["response"]))


async def refuse(
    pool: asyncpg.Pool, keyed: Keyed, status: int, body: bytes, now: datetime
) -> Replay | None:
    """Keep a refusal decided before any claim (the gate said full) with one write; None when
    it was kept, else what a known key answers instead."""
    async with connection(pool) as conn:
        kept = await conn.fetchval(
            queries["idem_refuse"],
            keyed.api_key_hash,
            keyed.key,
            keyed.body_hash,
            now,
            status,
            body,
        )
    if kept:
        return None
    found = await claim(pool, keyed, now)
    if isinstance(found, Replay):
        return found
    await finish(pool, found, status, body)  # an expired key taken over
    return None


async def finish(pool: asyncpg.Pool, held: Claim, status: int, body: bytes) -> None:
    async with connection(pool) as conn:
        await conn.execute(queries["idem_finish"], held.api_key_hash, held.key, status, body)


async def release(pool: asyncpg.Pool, held: Claim) -> None:
    """Forget the claim so that a retry runs the request again (nothing was done)."""
    async with connection(pool) as conn:
        await conn.execute(queries["idem_release"], held.api_key_hash, held.key)
