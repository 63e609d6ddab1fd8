"""Booking rows and events as the API shows them (times in the office's zone)."""

from __future__ import annotations

import functools
from datetime import datetime, time
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from .catalog import Catalog
from .models import BookingOut, PersonOut

_HHMM: dict[time, str] = {}


def hhmm(value: time) -> str:
    """`09:30`; each time formatted once (a day has at most 1 440 of them)."""
    found = _HHMM.get(value)
    if found is None:
        found = value.strftime("%H:%M")
        if len(_HHMM) < 4096:
            _HHMM[value] = found
    return found


def instant(value: datetime | None, tz: ZoneInfo) -> str | None:
    if value is None:
        return None
    local = value.astimezone(tz)
    if local.microsecond:
        return local.isoformat(timespec="milliseconds")
    return local.isoformat(timespec="seconds")


# A window's instants (its start, end, cancel deadline) are the same text for every booking of
# it: formatted once (4 us each, a tenth of that from here).
window_instant = functools.lru_cache(maxsize=4096)(instant)


def person(row: asyncpg.Record) -> PersonOut:
    """The person of a booking's or an entry's row, masked as it was kept."""
    return PersonOut(id_type=row["id_type"], id_number_masked=row["id_masked"], name=row["name"])


def booking(row: asyncpg.Record, tz: ZoneInfo) -> BookingOut:
    """A row of bookings joined with its window (queries.sql `booking_rows`)."""
    return BookingOut(
        id=row["id"],
        status=row["status"],
        office_id=row["office_id"],
        service_id=row["service_id"],
        date=row["day"].isoformat(),
        start=hhmm(row["start_time"]),
        end=hhmm(row["end_time"]),
        starts_at=instant(row["starts_at"], tz) or "",
        ends_at=instant(row["ends_at"], tz) or "",
        party_size=row["party_size"],
        person=person(row),
        channel=row["channel"],
        reference=row["reference"],
        metadata=row["metadata"],
        created_at=instant(row["created_at"], tz) or "",
        cancel_deadline=instant(row["cancel_deadline"], tz),
        cancelled_at=instant(row["cancelled_at"], tz),
        cancelled_by=row["cancelled_by"],
        cancel_reason=row["cancel_reason"],
        checked_in_at=instant(row["checked_in_at"], tz),
        ticket=row["ticket"],
        reschedules=row["reschedules"],
        no_show_waived_at=instant(row["no_show_waived_at"], tz),
        members=msgspec.convert(row["members"], list[PersonOut]),
    )


async def bookings(catalog: Catalog, rows: list[asyncpg.Record]) -> list[BookingOut]:
    """Rows of `booking_rows`, each in its office's zone."""
    return [booking(row, (await catalog.office(row["office_id"])).tz) for row in rows]


_encode = msgspec.json.Encoder().encode


def event_payload(booking_out: BookingOut, **extra: object) -> bytes:
    """The members an event carries besides id, type and occurred_at."""
    return _encode({"booking": booking_out, **extra})
