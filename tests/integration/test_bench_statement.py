"""`bench --scenarios book-sql` (bench/statement.py): Postgres's side of a booking driven alone,
on real Postgres. What it counts as booked is what Postgres holds, the windows it fills are
never oversold, and what it sends is what the API sends for the same person."""

from __future__ import annotations

from datetime import UTC, datetime

from slots_service import booking
from slots_service.bench import statement
from slots_service.bench.loadgen import person
from slots_service.config import Settings
from slots_service.models import BookingIn, PersonIn
from slots_service.runtime import Runtime
from tests.conftest import OFFICE, OFFICE_ID, SERVICE_ID
from tests.integration.helpers import prepare_catalog
from tests.integration.test_booking_race import NOW


def _spec(settings: Settings) -> dict[str, object]:
    run = {"tag": 7, "first_person": 100, "concurrency": 16, "warmup": 0.0, "seconds": 0.5}
    spec = statement.spec_of(settings, OFFICE_ID, OFFICE["timezone"], SERVICE_ID, **run)
    return spec | {"pool_size": 4}


async def test_what_it_counts_as_booked_is_what_postgres_holds(
    rt: Runtime, settings: Settings
) -> None:
    await prepare_catalog(rt, NOW)
    seats = await rt.pool.fetchval(
        "SELECT sum(capacity) FROM windows WHERE office_id = $1 AND NOT closed", OFFICE_ID
    )
    result = await statement.drive(_spec(settings))
    held = await rt.pool.fetchrow(
        "SELECT count(*) AS bookings, count(DISTINCT person_id) AS people,"
        " (SELECT sum(booked) FROM windows WHERE office_id = $1) AS booked,"
        " (SELECT count(*) FROM windows WHERE office_id = $1 AND booked > capacity) AS over,"
        " (SELECT count(*) FROM events WHERE type = 'booking.created') AS events"
        " FROM bookings WHERE office_id = $1",
        OFFICE_ID,
    )
    assert held is not None
    # a few dozen seats, 16 callers for half a second: sold out, the rest refused as full
    assert result["created_all"] == held["bookings"] == held["people"] == held["booked"] == seats
    assert held["events"] == seats
    assert held["over"] == 0
    assert set(result["statuses_all"]) == {"201", "409 slot_full"}
    assert result["persons"] == sum(result["statuses_all"].values())
    assert result["requests"] == sum(result["statuses"].values()) > 0


async def test_its_values_are_the_apis_for_the_same_person(rt: Runtime, settings: Settings) -> None:
    """The identity, phone and masked number it sends are those the API derives from the load
    generator's person of the same number."""
    await prepare_catalog(rt, NOW)
    spec = _spec(settings)
    row = await rt.pool.fetchrow(
        "SELECT day, start_time, end_time, starts_at, ends_at FROM windows"
        " WHERE office_id = $1 ORDER BY day, start_time LIMIT 1",
        OFFICE_ID,
    )
    assert row is not None
    window = statement.Window(*row.values())
    params = statement.booking_params(spec, window, 5, datetime.now(UTC))
    id_number, phone = person(105, 7)
    who = booking.who_of(
        settings, PersonIn(id_type="passport", id_number=id_number, name="BENCH", phone=phone)
    )
    assert (params.id_hmac, params.phone_hmac, params.id_masked) == (
        who.id_hmac,
        who.phone_hmac,
        who.id_masked,
    )
    assert (params.office_id, params.day, params.start_time) == (
        OFFICE_ID,
        window.day,
        window.start,
    )
    body = BookingIn(
        office_id=OFFICE_ID,
        service_id=SERVICE_ID,
        date=window.day,
        start=window.start.strftime("%H:%M"),
        person=PersonIn(id_type="passport", id_number=id_number, name="BENCH", phone=phone),
    )
    assert params.channel == body.channel  # the load generator's bodies give none
