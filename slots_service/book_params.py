"""The `book` statement's values (queries.sql): one booking's, and a batch's as the statement's
one parameter.

A batch is sent as one array of JSON objects, one per booking with BookParams' names, which the
statement reads with `jsonb_to_record`. The driver's encoding of an array per value (27 of
them, element by element) was 8 % of the API event loop's time under load; a `msgspec` encode
of each booking is a small part of that. Bytes travel as base64 (what msgspec
writes), decoded by the statement; the event's payload, JSON already, is embedded as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time

import msgspec


class BookParams(msgspec.Struct, frozen=True, kw_only=True):
    """One booking's values, by the names of the statement's record (queries.sql, `book`)."""

    office_id: str
    day: date
    start_time: time
    end_time: time
    party_size: int
    id_hmac: bytes
    id_type: str
    id_masked: str
    phone_hmac: bytes | None
    booking_id: str
    service_id: str
    name: str
    channel: str
    reference: str | None
    metadata: dict[str, str]
    made_on: date
    bookings_per_day: int
    active_per_service: int
    now: datetime
    cancel_deadline: datetime | None
    event_payload: msgspec.Raw  # the event's JSON object
    api_key_hash: bytes | None
    idempotency_key: str | None
    response: bytes | None  # None: no key, nothing kept
    claim_token: bytes | None
    rebook_cooldown: int
    notice_accepted: bool


_encode = msgspec.json.Encoder().encode


def book_args(batch: Sequence[BookParams]) -> tuple[list[bytes]]:
    """The `book` statement's arguments for these bookings, in their order: a JSON object
    each (bytes: the pool's jsonb codec sends them as they are, db.py)."""
    return ([_encode(params) for params in batch],)
