"""Idempotency-Key: the first response to a key is kept 24 h and replayed to retries.

Keys are scoped per API key. The first request claims the key (a row with no status yet, a
random token naming the request, and a lease on Postgres's clock); a concurrent duplicate gets
`idempotency_in_progress` with `Retry-After` the seconds left on the lease; a retry with another
body gets `idempotency_key_reused`. A claim whose request died (process killed, connection lost)
is taken over by the next retry once its lease has lapsed. A booking stores its response in the
booking's own statement, and only while the token is still its own, so an acknowledged booking
and its replay can never disagree, and a request slower than its lease books nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from . import errors
from .db import connection, queries


@dataclass(frozen=True)
class Claim:
    api_key_hash: bytes
    key: str
    token: bytes


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


async def claim(pool: asyncpg.Pool, keyed: Keyed, now: datetime, lease_s: int) -> Claim | Replay:
    """Own the key for this request for `lease_s` seconds of Postgres's clock, or learn what to
    answer instead (a replay, or `idempotency_key_reused` / `idempotency_in_progress` raised)."""
    api_key_hash, key, body_hash = keyed.api_key_hash, keyed.key, keyed.body_hash
    async with connection(pool) as conn:
        for _ in range(2):  # a second time only when the key vanished between the statements
            token = secrets.token_bytes(16)
            claimed = await conn.fetchval(
                queries["idem_claim"],
                api_key_hash,
                key,
                body_hash,
                now,
                float(lease_s),
                token,
                now - keyed.keep,
            )
            if claimed:
                return Claim(api_key_hash, key, token)
            row = await conn.fetchrow(queries["idem_get"], api_key_hash, key)
            if row is None:  # purged or released between the two statements
                continue
            if row["request_hash"] != body_hash:
                raise errors.IdempotencyKeyReused()
            if row["status"] is None:
                raise errors.IdempotencyInProgress(row["retry_after"] or 1)
            return Replay(row["status"], bytes(row["response"]))
    raise errors.IdempotencyInProgress(1)


async def refuse(
    pool: asyncpg.Pool, keyed: Keyed, status: int, body: bytes, now: datetime, lease_s: int
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
    found = await claim(pool, keyed, now, lease_s)
    if isinstance(found, Replay):
        return found
    await finish(pool, found, status, body)  # an expired key or a lapsed claim taken over
    return None


async def finish(pool: asyncpg.Pool, held: Claim, status: int, body: bytes) -> None:
    """Keep the answer, if the claim is still this request's."""
    async with connection(pool) as conn:
        await conn.execute(
            queries["idem_finish"], held.api_key_hash, held.key, status, body, held.token
        )


async def release(pool: asyncpg.Pool, held: Claim) -> None:
    """Forget the claim so that a retry runs the request again (nothing was done); a claim
    another request took over stays that request's."""
    async with connection(pool) as conn:
        await conn.execute(queries["idem_release"], held.api_key_hash, held.key, held.token)
