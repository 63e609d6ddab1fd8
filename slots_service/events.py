"""The events outbox: events written in the transaction of their change, and the feed read
by cursor (`webhooks.py` delivers the same feed).

The feed is ordered by (transaction id, event id) and shows an event only once every
transaction older than the oldest still running has ended (`pg_snapshot_xmin`). A transaction
that commits late therefore appears after the cursors already handed out, never before them:
each committed event is seen exactly once by a reader that follows `next`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec
from msgspec import UNSET

from . import errors, metrics
from .db import connection, queries
from .models import BookingOut, Event, EventPage
from .render import booking as render_booking
from .render import event_payload, instant
from .runtime import Runtime

log = logging.getLogger(__name__)
_CURSOR = re.compile(r"^(\d{1,20})\.(\d{1,20})$")
_encode = msgspec.json.Encoder().encode


def parse_cursor(cursor: str | None) -> tuple[int, int]:
    if cursor is None or cursor == "":
        return 0, 0
    match = _CURSOR.match(cursor)
    # Beyond xid8 / bigint Postgres would fail the query: no cursor handed out is that large.
    if match is None or int(match.group(1)) >= 2**64 or int(match.group(2)) >= 2**63:
        raise errors.InvalidRequest("after must be a cursor returned as `next`")
    return int(match.group(1)), int(match.group(2))


async def feed(rt: Runtime, after: str | None, limit: int) -> list[tuple[str, Event]]:
    """(cursor, event) pairs after a cursor, in feed order."""
    xid, last_id = parse_cursor(after)
    async with connection(rt.pool) as conn:
        rows = await conn.fetch(queries["events_after"], xid, last_id, limit)
    found = []
    for row in rows:
        payload: dict[str, Any] = row["payload"]
        event = Event(
            id=str(row["id"]),
            type=row["type"],
            occurred_at=await _occurred_at(rt, row["occurred_at"], payload),
            booking=payload.get("booking"),
            person=payload.get("person"),
            entry=payload.get("entry", UNSET),
            waitlist=payload.get("waitlist", UNSET),
        )
        found.append((f"{row['cursor_xid']}.{row['id']}", event))
    return found


async def page(rt: Runtime, after: str | None, limit: int) -> EventPage:
    found = await feed(rt, after, limit)
    xid, last_id = parse_cursor(after)
    next_cursor = found[-1][0] if found else f"{xid}.{last_id}"
    return EventPage(items=[event for _, event in found], next=next_cursor)


async def _occurred_at(rt: Runtime, at: datetime, payload: dict[str, Any]) -> str:
    about = payload.get("booking") or payload.get("entry") or payload.get("waitlist") or {}
    tz = rt.tz
    if "office_id" in about:
        with contextlib.suppress(errors.NotFound):
            tz = (await rt.catalog.office(about["office_id"])).tz
    return instant(at, tz) or ""


# ---------------------------------------------------------------- outbox writes


async def emit(
    conn: asyncpg.Connection,
    rt: Runtime,
    kind: str,
    booking_id: str,
    now: datetime,
    **extra: object,
) -> BookingOut:
    """Insert an event carrying the booking as it now is, in the caller's transaction;
    returns that booking."""
    row = await conn.fetchrow(queries["booking_by_id"], booking_id)
    assert row is not None
    office = await rt.catalog.office(row["office_id"])
    out = render_booking(row, office.tz)
    await conn.execute(
        queries["insert_event"], kind, now, booking_id, row["day"], event_payload(out, **extra)
    )
    metrics.events_published.labels(kind).inc()
    return out


async def emit_blocked(
    conn: asyncpg.Connection, rt: Runtime, booking: BookingOut, until: datetime, now: datetime
) -> None:
    """`person.blocked`: the booking that earned the block, and the block's end."""
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
