"""Idempotency-Key: the first response to a key is kept 24 h and replayed to retries.

Keys are scoped per API key. The first request claims the key (a row with no outcome yet, a
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import msgspec

from . import errors
from .db import connection, queries
from .models import BookingOut


@dataclass(frozen=True)
class Claim:
    api_key_hash: bytes
    key: str
    token: bytes


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


def mark(keyed: Keyed) -> str:
    """The key's name in the gate's mark of a key's first request (take.lua): a hash of the
    API key's hash and the key, so no key is kept there as the caller wrote it."""
    return hashlib.blake2b(keyed.api_key_hash + keyed.key.encode(), digest_size=16).hexdigest()


# Answers about the request or the moment, not about the booking: a retry may be answered
# otherwise, so they are never kept for the key.
_NOT_KEPT = (
    errors.InvalidRequest,
    errors.Unauthorized,
    errors.Forbidden,
    errors.IdempotencyInProgress,
    errors.IdempotencyKeyReused,
    errors.RateLimited,
    errors.Unavailable,
)
BOOKED = "booked"  # the outcome of every success, a booking or not
T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
_booking = msgspec.json.Decoder(BookingOut)


def kept(error: errors.DomainError) -> bool:
    """Whether a refusal is the key's answer for good (replayed to every retry)."""
    return not isinstance(error, _NOT_KEPT)


def _refusal(error: errors.DomainError) -> bytes:
    return _encode({"detail": error.detail, **error.extra})


def replay(outcome: str, response: bytes) -> BookingOut:
    """The first answer again: the booking, or the refusal raised again."""
    if outcome == BOOKED:
        return _booking.decode(response)
    members = msgspec.json.decode(response, type=dict[str, Any])
    detail = str(members.pop("detail", ""))
    raise errors.BY_CODE.get(outcome, errors.DomainError).restore(detail, members)


async def claim(
    pool: asyncpg.Pool, keyed: Keyed, now: datetime, lease_s: int
) -> Claim | BookingOut:
    """Own the key for this request for `lease_s` seconds of Postgres's clock, or learn what to
    answer instead: the booking made before, or a refusal (kept before, or
    `idempotency_key_reused` / `idempotency_in_progress`) raised."""
    found = await claim_raw(pool, keyed, now, lease_s)
    return _booking.decode(found) if isinstance(found, bytes) else found


async def claim_raw(pool: asyncpg.Pool, keyed: Keyed, now: datetime, lease_s: int) -> Claim | bytes:
    """As `claim`, for any request: the first success's response body as it was kept."""
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
            if row["outcome"] is None:
                raise errors.IdempotencyInProgress(row["retry_after"] or 1)
            if row["outcome"] == BOOKED:
                return bytes(row["response"])
            replay(row["outcome"], bytes(row["response"]))  # raises the refusal kept
    raise errors.IdempotencyInProgress(1)


async def store(conn: asyncpg.Connection, held: Claim | None, response: bytes) -> None:
    """In the transaction of the change: its response kept for the key, while the claim is
    still this request's (else the change is rolled back: a retry took the key over)."""
    if held is None:
        return
    if not await conn.fetchval(
        queries["idem_store"], held.api_key_hash, held.key, response, held.token
    ):
        raise errors.IdempotencyInProgress()


async def run_keyed(
    pool: asyncpg.Pool,
    keyed: Keyed | None,
    now: datetime,
    lease_s: int,
    work: Callable[[Claim | None], Awaitable[T]],
    decoder: msgspec.json.Decoder[T],
) -> T:
    """Run a request that keeps its response with `store` (entries, the waitlist): once per
    key; a retry gets the first success again, or the refusal kept for the key."""
    if keyed is None:
        return await work(None)
    found = await claim_raw(pool, keyed, now, lease_s)
    if isinstance(found, bytes):
        return decoder.decode(found)
    try:
        return await work(found)
    except errors.DomainError as exc:
        if kept(exc):
            await finish(pool, found, exc)
        else:
            await release(pool, found)
        raise
    except BaseException:
        await release(pool, found)
        raise


async def refuse(
    pool: asyncpg.Pool, keyed: Keyed, error: errors.DomainError, now: datetime, lease_s: int
) -> BookingOut | None:
    """Keep a refusal decided before any claim (the gate said full) with one write; None when
    it was kept, else what a known key answers instead (a booking; a refusal is raised)."""
    async with connection(pool) as conn:
        kept_now = await conn.fetchval(
            queries["idem_refuse"],
            keyed.api_key_hash,
            keyed.key,
            keyed.body_hash,
            now,
            error.code,
            _refusal(error),
        )
    if kept_now:
        return None
    found = await claim(pool, keyed, now, lease_s)
    if isinstance(found, BookingOut):
        return found
    await finish(pool, found, error)  # an expired key or a lapsed claim taken over
    return None


async def finish(pool: asyncpg.Pool, held: Claim, error: errors.DomainError) -> None:
    """Keep the refusal as the key's answer, if the claim is still this request's."""
    async with connection(pool) as conn:
        await conn.execute(
            queries["idem_finish"],
            held.api_key_hash,
            held.key,
            error.code,
            _refusal(error),
            held.token,
        )


async def release(pool: asyncpg.Pool, held: Claim) -> None:
    """Forget the claim so that a retry runs the request again (nothing was done); a claim
    another request took over stays that request's."""
    async with connection(pool) as conn:
        await conn.execute(queries["idem_release"], held.api_key_hash, held.key, held.token)
