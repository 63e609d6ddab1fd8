"""POST /v1/bookings and reading bookings back: the 201 body, every refusal, search, standing.

Every refusal is followed by a look at availability and search: a refused request books
nothing.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from slots_service.config import Settings
from tests.api.steps import (
    book,
    bookings_of,
    cancel,
    events,
    get,
    overlapping_client,
    problem,
    remaining,
    search,
    seats,
    standing,
)
from tests.conftest import (
    OFFICE,
    OFFICE_ID,
    READER_KEY,
    SERVICE,
    SERVICE_ID,
    TUESDAY,
    WEDNESDAY,
    WRITER_KEY,
    booking_body,
    person,
    set_clock,
)

BOOKING_FIELDS = {
    "id",
    "status",
    "office_id",
    "service_id",
    "date",
    "start",
    "end",
    "starts_at",
    "ends_at",
    "party_size",
    "person",
    "channel",
    "reference",
    "metadata",
    "created_at",
    "cancel_deadline",
    "cancelled_at",
    "cancelled_by",
    "cancel_reason",
    "checked_in_at",
    "ticket",
    "reschedules",
    "no_show_waived_at",
    "members",
}
BOOKING_ID = re.compile(r"^[A-Z0-9]{12,20}$")
OTHER_SERVICE = "residence-permit-extension"
UNOFFERED_SERVICE = "visa-extension"


async def add_service(
    client: httpx.AsyncClient, service_id: str, offered: bool = True, **overrides: Any
) -> None:
    """Another service; `offered` adds it to the test office."""
    body = {**SERVICE, "name": service_id, **overrides}
    assert (await client.put(f"/v1/services/{service_id}", json=body)).status_code == 200
    if offered:
        office = {**OFFICE, "services": [*OFFICE["services"], service_id]}
        assert (await client.put(f"/v1/offices/{OFFICE_ID}", json=office)).status_code == 200


async def assert_refused(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> dict[str, Any]:
    """The request is refused with this problem, and nothing is booked for anyone."""
    before = await seats(client)
    who = body.get("person") or person()
    had = await held_by(client, who)
    feed, _ = await events(client)
    response = await client.post("/v1/bookings", json=body)
    found = problem(response, status, code)
    assert str(who.get("id_number")) not in response.text
    assert await seats(client) == before
    assert await held_by(client, who) == had
    assert (await events(client))[0] == feed
    return found


async def held_by(client: httpx.AsyncClient, who: dict[str, Any]) -> list[dict[str, Any]] | None:
    """What a search finds for this identity; None when it is not a valid identity."""
    ident = {"id_type": who.get("id_type"), "id_number": who.get("id_number")}
    response = await client.post("/v1/bookings/search", json=ident)
    if response.status_code == 400:
        return None
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# ---------------------------------------------------------------- the 201 body


async def test_created_booking_has_exactly_the_contract_fields(
    catalog: httpx.AsyncClient,
) -> None:
    who = {
        "id_type": "passport",
        "id_number": "M92839408",
        "name": "LEE JIWON",
        "phone": "+8613926150414",
    }
    response = await catalog.post(
        "/v1/bookings",
        json=booking_body(
            who, WEDNESDAY, "09:00", reference="44030020110500002", metadata={"delivery": "post"}
        ),
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    created = response.json()
    assert set(created) == BOOKING_FIELDS
    assert BOOKING_ID.match(created["id"]), created["id"]
    assert {k: v for k, v in created.items() if k != "id"} == {
        "status": "booked",
        "office_id": OFFICE_ID,
        "service_id": SERVICE_ID,
        "date": WEDNESDAY,
        "start": "09:00",
        "end": "09:30",
        "starts_at": "2026-11-25T09:00:00+08:00",
        "ends_at": "2026-11-25T09:30:00+08:00",
        "party_size": 1,
        "person": {"id_type": "passport", "id_number_masked": "M9****408", "name": "LEE JIWON"},
        "channel": "web",
        "reference": "44030020110500002",
        "metadata": {"delivery": "post"},
        "created_at": "2026-11-23T10:00:00+08:00",
        "cancel_deadline": "2026-11-24T18:00:00+08:00",
        "cancelled_at": None,
        "cancelled_by": None,
        "cancel_reason": None,
        "checked_in_at": None,
        "ticket": None,
        "reschedules": 0,
        "no_show_waived_at": None,
        "members": [],
    }
    assert "M92839408" not in response.text
    assert await get(catalog, created["id"]) == created


async def test_afternoon_window_and_optional_members(catalog: httpx.AsyncClient) -> None:
    created = await book(catalog, date=TUESDAY, start="14:30", channel="phone")
    assert (created["start"], created["end"]) == ("14:30", "15:00")
    assert created["starts_at"] == "2026-11-24T14:30:00+08:00"
    assert created["ends_at"] == "2026-11-24T15:00:00+08:00"
    assert created["cancel_deadline"] == "2026-11-23T18:00:00+08:00"
    assert created["channel"] == "phone"
    assert created["reference"] is None
    assert created["metadata"] == {}


async def test_booking_ids_differ_and_are_not_sequential(catalog: httpx.AsyncClient) -> None:
    ids = [(await book(catalog, start=start))["id"] for start in ("09:00", "09:00", "09:30")]
    assert len(set(ids)) == 3
    assert all(BOOKING_ID.match(i) for i in ids)
    # Random ids share no long common prefix the way counters do.
    assert len({i[:6] for i in ids}) == 3


async def test_id_number_is_upper_cased_and_spaces_stripped(catalog: httpx.AsyncClient) -> None:
    who = person()
    raw = {**who, "id_number": " " + who["id_number"][:4].lower() + " " + who["id_number"][4:]}
    created = await book(catalog, raw)
    number = who["id_number"]
    assert created["person"]["id_number_masked"] == number[:2] + "****" + number[-3:]
    # The same identity however it is written.
    assert [b["id"] for b in await bookings_of(catalog, who)] == [created["id"]]
    assert [b["id"] for b in await bookings_of(catalog, raw)] == [created["id"]]
    again = await assert_refused(
        catalog, booking_body(who, "2026-11-26"), 409, "active_booking_exists"
    )
    assert again["booking_id"] == created["id"]


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("AB1234", "AB*234"),
        ("E12345678", "E1****678"),
        ("A" + "0" * 30 + "Z", "A0" + "*" * 27 + "00Z"),
    ],
)
async def test_id_number_masked_keeps_the_first_2_and_last_3(
    catalog: httpx.AsyncClient, number: str, masked: str
) -> None:
    created = await book(catalog, person(id_number=number))
    assert created["person"]["id_number_masked"] == masked


async def test_full_id_number_is_never_in_any_response(catalog: httpx.AsyncClient) -> None:
    who = person()
    number = who["id_number"]
    created = await book(catalog, who, reference="REF-PII-1")
    ident = {"id_type": who["id_type"], "id_number": number}
    responses = [
        await catalog.get(f"/v1/bookings/{created['id']}"),
        await catalog.post("/v1/bookings/search", json=ident),
        await catalog.post("/v1/bookings/search", json={"reference": "REF-PII-1"}),
        await catalog.post("/v1/people/standing", json=ident),
        await catalog.post("/v1/bookings", json=booking_body(who, "2026-11-26")),
        await catalog.post(
            f"/v1/bookings/{created['id']}/reschedule", json={"date": WEDNESDAY, "start": "09:30"}
        ),
        await cancel(catalog, created["id"]),
        await catalog.get("/v1/events"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 409, 200, 200, 200]
    for response in responses:
        assert number not in response.text, response.request.url


# ---------------------------------------------------------------- reading


async def test_get_unknown_booking_is_404(catalog: httpx.AsyncClient) -> None:
    problem(await catalog.get("/v1/bookings/ZZZZZZZZZZZZ"), 404, "not_found")


async def test_reading_needs_a_key_with_the_scope(catalog: httpx.AsyncClient) -> None:
    created = await book(catalog)
    url = f"/v1/bookings/{created['id']}"
    reader = await catalog.get(url, headers={"Authorization": f"Bearer {READER_KEY}"})
    assert reader.status_code == 200
    assert reader.json() == created
    problem(
        await catalog.get(url, headers={"Authorization": f"Bearer {WRITER_KEY}"}), 403, "forbidden"
    )
    problem(await catalog.get(url, headers={"Authorization": "Bearer nope"}), 401, "unauthorized")


async def test_booking_needs_the_write_scope(catalog: httpx.AsyncClient) -> None:
    before = await seats(catalog)
    who = person()
    response = await catalog.post(
        "/v1/bookings",
        json=booking_body(who),
        headers={"Authorization": f"Bearer {READER_KEY}"},
    )
    problem(response, 403, "forbidden")
    response = await catalog.post(
        "/v1/bookings", json=booking_body(who), headers={"Authorization": ""}
    )
    problem(response, 401, "unauthorized")
    assert await seats(catalog) == before
    assert await bookings_of(catalog, who) == []
    writer = await catalog.post(
        "/v1/bookings", json=booking_body(who), headers={"Authorization": f"Bearer {WRITER_KEY}"}
    )
    assert writer.status_code == 201, writer.text


# ---------------------------------------------------------------- seats


async def test_party_bigger_than_the_seats_left_is_slot_full(catalog: httpx.AsyncClient) -> None:
    await book(catalog, party_size=2)
    assert await remaining(catalog, WEDNESDAY, "09:00") == 1
    await assert_refused(catalog, booking_body(party_size=2), 409, "slot_full")
    assert await remaining(catalog, WEDNESDAY, "09:00") == 1
    await book(catalog, party_size=1)
    assert await remaining(catalog, WEDNESDAY, "09:00") == 0


async def test_full_window_is_slot_full(catalog: httpx.AsyncClient) -> None:
    for _ in range(2):
        await book(catalog, date=TUESDAY, start="14:00")
    assert await remaining(catalog, TUESDAY, "14:00") == 0
    await assert_refused(catalog, booking_body(date=TUESDAY, start="14:00"), 409, "slot_full")
    # The neighbouring window is untouched.
    assert await remaining(catalog, TUESDAY, "14:30") == 2


async def test_overlapping_requests_never_oversell(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    people = [person() for _ in range(8)]
    async with overlapping_client(settings) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v1/bookings", json=booking_body(who, party_size=1 + i % 2))
                for i, who in enumerate(people)
            )
        )
    made = [a.json() for a in answers if a.status_code == 201]
    for answer in answers:
        if answer.status_code != 201:
            problem(answer, 409, "slot_full")
    taken = sum(b["party_size"] for b in made)
    assert taken == 3  # seats only shrink here, and four parties of one asked
    assert await remaining(catalog, WEDNESDAY, "09:00") == 3 - taken
    held = [b for who in people for b in await bookings_of(catalog, who)]
    assert sorted(b["id"] for b in held) == sorted(b["id"] for b in made)


async def test_group_takes_all_its_seats_or_none(catalog: httpx.AsyncClient) -> None:
    group = await book(catalog, party_size=3)
    assert group["party_size"] == 3
    assert await remaining(catalog, WEDNESDAY, "09:00") == 0
    await assert_refused(catalog, booking_body(), 409, "slot_full")
    # Three people do not fit a two-seat window, not even partly.
    await assert_refused(catalog, booking_body(start="14:00", party_size=3), 409, "slot_full")
    assert await remaining(catalog, WEDNESDAY, "14:00") == 2
    # Cancelling the group gives back all three seats.
    assert (await cancel(catalog, group["id"])).status_code == 200
    assert await remaining(catalog, WEDNESDAY, "09:00") == 3


# ---------------------------------------------------------------- per-person rules


async def test_second_active_booking_for_the_service_names_the_first(
    catalog: httpx.AsyncClient,
) -> None:
    who = person()
    first = await book(catalog, who)
    found = await assert_refused(
        catalog, booking_body(who, "2026-11-26", "14:00"), 409, "active_booking_exists"
    )
    assert found["booking_id"] == first["id"]
    # Once the first is cancelled, the next day the person may book again.
    assert (await cancel(catalog, first["id"])).status_code == 200
    await set_clock(catalog, "2026-11-24T09:00:00+08:00")
    await book(catalog, who, "2026-11-26", "14:00")


async def test_second_booking_the_same_office_day_is_daily_limit_reached(
    catalog: httpx.AsyncClient,
) -> None:
    await add_service(catalog, OTHER_SERVICE)
    who = person()
    await book(catalog, who)
    other = booking_body(who, "2026-11-26", service_id=OTHER_SERVICE)
    await assert_refused(catalog, other, 409, "daily_limit_reached")
    # 23:59 in Shenzhen is still the same office-local day (15:59 UTC)...
    await set_clock(catalog, "2026-11-23T23:59:00+08:00")
    await assert_refused(catalog, other, 409, "daily_limit_reached")
    # ...and midnight there is the next one, though it is still Monday in UTC.
    await set_clock(catalog, "2026-11-24T00:00:00+08:00")
    made = await book(catalog, who, "2026-11-26", service_id=OTHER_SERVICE)
    assert made["service_id"] == OTHER_SERVICE


async def test_cancelled_booking_still_counts_towards_the_daily_limit(
    catalog: httpx.AsyncClient,
) -> None:
    await add_service(catalog, OTHER_SERVICE)
    who = person()
    made = await book(catalog, who)
    assert (await cancel(catalog, made["id"])).status_code == 200
    await assert_refused(
        catalog, booking_body(who, service_id=OTHER_SERVICE), 409, "daily_limit_reached"
    )


async def test_phone_of_another_identity_is_refused(catalog: httpx.AsyncClient) -> None:
    owner = person()
    await book(catalog, owner)
    other = person(phone=owner["phone"])
    await assert_refused(catalog, booking_body(other), 409, "phone_bound_to_other_person")
    # The owner's own phone passes the phone rule and meets the next rule in line.
    await set_clock(catalog, "2026-11-24T09:00:00+08:00")
    await assert_refused(catalog, booking_body(owner, "2026-11-26"), 409, "active_booking_exists")


# ---------------------------------------------------------------- not bookable


NOT_BOOKABLE: dict[str, dict[str, Any]] = {
    "today": {"date": "2026-11-23", "start": "14:00"},
    "today + 15": {"date": "2026-12-08"},
    "in the past": {"date": "2026-11-20"},
    "saturday": {"date": "2026-11-28"},
    "sunday": {"date": "2026-11-29"},
    "no window starts then": {"start": "09:10"},
    "between the opening ranges": {"start": "12:00"},
    "after closing": {"start": "15:00"},
    "party above the service's maximum": {"party_size": 6},
}


async def test_not_bookable(catalog: httpx.AsyncClient, subtests: pytest.Subtests) -> None:
    for why, changes in NOT_BOOKABLE.items():
        with subtests.test(why):
            await assert_refused(catalog, {**booking_body(), **changes}, 422, "not_bookable")


@pytest.mark.parametrize(
    ("url", "mark"),
    [
        ("/v1/calendar/2026-11-26", {"kind": "holiday", "name": "test holiday"}),
        (f"/v1/offices/{OFFICE_ID}/closures/2026-11-26", {"reason": "burst pipe"}),
    ],
)
async def test_closed_day_is_not_bookable(
    catalog: httpx.AsyncClient, url: str, mark: dict[str, str]
) -> None:
    assert (await catalog.put(url, json=mark)).status_code == 200
    assert not any(day == "2026-11-26" for day, _ in await seats(catalog))
    await assert_refused(catalog, booking_body(date="2026-11-26"), 422, "not_bookable")
    assert (await catalog.delete(url)).status_code == 204
    await book(catalog, date="2026-11-26")


async def test_horizon_ends_on_today_plus_14(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date="2026-12-07")
    assert made["date"] == "2026-12-07"
    assert max(day for day, _ in await seats(catalog)) == "2026-12-07"


async def test_service_not_offered_at_the_office(catalog: httpx.AsyncClient) -> None:
    await add_service(catalog, UNOFFERED_SERVICE, offered=False)
    body = booking_body(service_id=UNOFFERED_SERVICE)
    await assert_refused(catalog, body, 422, "not_bookable")


async def test_reference_required_by_the_service(catalog: httpx.AsyncClient) -> None:
    await add_service(catalog, OTHER_SERVICE, requires_reference=True)
    body = booking_body(service_id=OTHER_SERVICE)
    await assert_refused(catalog, body, 422, "not_bookable")
    made = await book(catalog, service_id=OTHER_SERVICE, reference="44030020110500002")
    assert made["reference"] == "44030020110500002"


async def test_unknown_office_or_service_is_404(catalog: httpx.AsyncClient) -> None:
    for changes in ({"office_id": "no-such-office"}, {"service_id": "no-such-service"}):
        await assert_refused(catalog, {**booking_body(), **changes}, 404, "not_found")


# ---------------------------------------------------------------- bad input


def _with_person(**changes: Any) -> dict[str, Any]:
    body = booking_body()
    return {**body, "person": {**body["person"], **changes}}


BAD_INPUT = {
    "unknown field": {**booking_body(), "seats": 1},
    "unknown person field": _with_person(email="a@example.com"),
    "phone without +": _with_person(phone="13926150414"),
    "phone with spaces": _with_person(phone="+86 139 2615 0414"),
    "id_type": _with_person(id_type="driver_licence"),
    "id_number symbols": _with_person(id_number="M92-839!408"),
    "id_number too short": _with_person(id_number="M12"),
    "id_number too long": _with_person(id_number="M" * 33),
    "empty name": _with_person(name=""),
    "party_size 0": {**booking_body(), "party_size": 0},
    "party_size string": {**booking_body(), "party_size": "1"},
    "party_size bool": {**booking_body(), "party_size": True},
    "party_size fraction": {**booking_body(), "party_size": 1.5},
    "17 metadata": {**booking_body(), "metadata": {f"k{i}": "v" for i in range(17)}},
    "metadata number": {**booking_body(), "metadata": {"n": 1}},
    "metadata nested": {**booking_body(), "metadata": {"a": {"b": "c"}}},
    "channel": {**booking_body(), "channel": "fax"},
    "start H:MM": {**booking_body(), "start": "9:00"},
    "bad date": {**booking_body(), "date": "2026-13-01"},
    "office_id format": {**booking_body(), "office_id": "Bad Office"},
    "no person": {k: v for k, v in booking_body().items() if k != "person"},
}


async def test_bad_input_is_400(catalog: httpx.AsyncClient, subtests: pytest.Subtests) -> None:
    for what, body in BAD_INPUT.items():
        with subtests.test(what):
            await assert_refused(catalog, body, 400, "invalid_request")


async def test_malformed_json_is_400(catalog: httpx.AsyncClient) -> None:
    before = await seats(catalog)
    response = await catalog.post(
        "/v1/bookings", content=b'{"office_id": ', headers={"content-type": "application/json"}
    )
    problem(response, 400, "invalid_request")
    assert await seats(catalog) == before


async def test_sixteen_string_metadata_values_are_kept_untouched(
    catalog: httpx.AsyncClient,
) -> None:
    metadata = {f"key-{i}": f"value {i} 值" for i in range(16)}
    made = await book(catalog, metadata=metadata)
    assert made["metadata"] == metadata
    assert (await get(catalog, made["id"]))["metadata"] == metadata


# ---------------------------------------------------------------- search


async def test_search_by_identity_newest_first(catalog: httpx.AsyncClient) -> None:
    who = person()
    first = await book(catalog, who)
    assert (await cancel(catalog, first["id"])).status_code == 200
    await set_clock(catalog, "2026-11-24T10:00:00+08:00")
    second = await book(catalog, who, "2026-11-26")
    found = await bookings_of(catalog, who)
    assert [b["id"] for b in found] == [second["id"], first["id"]]
    assert [b["status"] for b in found] == ["booked", "cancelled"]
    assert found[0] == await get(catalog, second["id"])
    assert await bookings_of(catalog, person()) == []


async def test_search_by_reference_newest_first_at_most_50(catalog: httpx.AsyncClient) -> None:
    roomy = {
        **OFFICE,
        "hours": {
            day: [{"start": "09:00", "end": "09:30", "capacity": 60}] for day in OFFICE["hours"]
        },
    }
    assert (await catalog.put(f"/v1/offices/{OFFICE_ID}", json=roomy)).status_code == 200
    made = []
    for i in range(51):
        await set_clock(catalog, f"2026-11-23T10:{i:02d}:00+08:00")
        made.append((await book(catalog, reference="44030020110500002"))["id"])
    await book(catalog, reference="44030020110599999")
    found = await search(catalog, reference="44030020110500002")
    assert [b["id"] for b in found] == made[::-1][:50]
    assert await search(catalog, reference="NOTHING-HERE") == []


async def test_search_needs_identity_or_reference(
    catalog: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    for body in (
        {},
        {"id_type": "passport"},
        {"id_number": "M92839408"},
        {"id_type": "passport", "id_number": "M92839408", "reference": "X"},
        {"id_type": "passport", "id_number": "M9#"},
        {"reference": ""},
        {"reference": "X", "phone": "+8613926150414"},
    ):
        with subtests.test(str(body)):
            response = await catalog.post("/v1/bookings/search", json=body)
            problem(response, 400, "invalid_request")


# ---------------------------------------------------------------- standing


async def test_standing_of_an_unknown_person(catalog: httpx.AsyncClient) -> None:
    assert await standing(catalog, person()) == {
        "no_shows": 0,
        "cancellations": 0,
        "blocked_until": None,
        "active_bookings": [],
    }


async def test_standing_lists_active_bookings_and_counts(catalog: httpx.AsyncClient) -> None:
    await add_service(catalog, OTHER_SERVICE)
    who = person()
    cancelled = await book(catalog, who)
    assert (await cancel(catalog, cancelled["id"])).status_code == 200
    await set_clock(catalog, "2026-11-24T10:00:00+08:00")
    later = await book(catalog, who, "2026-11-27")
    await set_clock(catalog, "2026-11-25T10:00:00+08:00")
    sooner = await book(catalog, who, "2026-11-26", service_id=OTHER_SERVICE)
    found = await standing(catalog, who)
    assert set(found) == {"no_shows", "cancellations", "blocked_until", "active_bookings"}
    assert found["no_shows"] == 0
    assert found["cancellations"] == 1
    assert found["blocked_until"] is None
    assert [b["id"] for b in found["active_bookings"]] == [sooner["id"], later["id"]]
    assert found["active_bookings"][0] == await get(catalog, sooner["id"])


async def test_standing_rejects_bad_identity(catalog: httpx.AsyncClient) -> None:
    response = await catalog.post(
        "/v1/people/standing", json={"id_type": "passport", "id_number": "M9#2"}
    )
    problem(response, 400, "invalid_request")
    response = await catalog.post(
        "/v1/people/standing",
        json={"id_type": "passport", "id_number": "M92839408", "name": "X"},
    )
    problem(response, 400, "invalid_request")
