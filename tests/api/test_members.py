"""API 1.1 party members: the other people of a party, each held to the person rules in the
booking's one transaction (a refusal for any member refuses the whole party with that member's
code, nothing taken), kept like the person (masked), the booking counted as each member's own."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
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
    run_job,
    seats,
    standing,
)
from tests.api.test_bookings import OTHER_SERVICE, add_service, assert_refused
from tests.conftest import WEDNESDAY, booking_body, person, set_clock

THURSDAY = "2026-11-26"


def member(n: int | None = None) -> dict[str, str]:
    """A member: an identity and a name, no phone."""
    found = person(n)
    return {k: found[k] for k in ("id_type", "id_number", "name")}


def masked(who: dict[str, str]) -> dict[str, str]:
    number = who["id_number"]
    return {
        "id_type": who["id_type"],
        "id_number_masked": number[:2] + "*" * (len(number) - 5) + number[-3:],
        "name": who["name"],
    }


def party(who: dict[str, str], members: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    """A booking of the person with these members (party_size one more, unless given)."""
    size = extra.pop("party_size", len(members) + 1)
    return {**booking_body(who, members=members, **extra), "party_size": size}


def with_settings(
    settings: Settings, **changed: Any
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return overlapping_client(replace(settings, **changed))


async def test_a_party_books_with_its_members_masked(catalog: httpx.AsyncClient) -> None:
    who, members = person(), [member(), member()]
    response = await catalog.post("/v1/bookings", json=party(who, members))
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["party_size"] == 3
    assert made["members"] == [masked(m) for m in members]
    for m in (who, *members):
        assert m["id_number"] not in response.text
    assert await get(catalog, made["id"]) == made
    assert await remaining(catalog, WEDNESDAY, "09:00") == 0
    # The booking is each member's own: search finds it, standing lists it.
    for m in members:
        assert await bookings_of(catalog, m) == [made]
        assert (await standing(catalog, m))["active_bookings"] == [made]
    created = [e for e in (await events(catalog))[0] if e["type"] == "booking.created"]
    assert [e["booking"] for e in created] == [made]


async def test_a_booking_without_members_has_none(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, party_size=2)
    assert made["members"] == []
    assert (await book(catalog, members=[]))["members"] == []


@pytest.mark.parametrize(
    "case", ["too few", "too many", "twice the same", "the person again", "for a party of one"]
)
async def test_members_not_matching_the_party_are_not_bookable(
    catalog: httpx.AsyncClient, case: str
) -> None:
    who, a, b = person(), member(), member()
    body = {
        "too few": party(who, [a], party_size=3),
        "too many": party(who, [a, b], party_size=2),
        "twice the same": party(who, [a, a]),
        "the person again": party(who, [a, {k: who[k] for k in ("id_type", "id_number", "name")}]),
        "for a party of one": party(who, [a], party_size=1),
    }[case]
    await assert_refused(catalog, body, 422, "not_bookable")
    for m in (a, b):
        assert await bookings_of(catalog, m) == []


async def test_a_member_may_not_carry_a_phone_or_a_bad_identity(catalog: httpx.AsyncClient) -> None:
    await assert_refused(catalog, party(person(), [person()]), 400, "invalid_request")
    bad = {**member(), "id_number": "ab"}
    await assert_refused(catalog, party(person(), [bad]), 400, "invalid_request")


async def test_a_member_holding_a_booking_refuses_the_whole_party(
    catalog: httpx.AsyncClient,
) -> None:
    held_by = person()
    theirs = await book(catalog, held_by, THURSDAY)
    as_member = {k: held_by[k] for k in ("id_type", "id_number", "name")}
    body = party(person(), [member(), as_member])
    refused = await assert_refused(catalog, body, 409, "active_booking_exists")
    assert refused["booking_id"] == theirs["id"]
    assert await bookings_of(catalog, held_by) == [theirs]


async def test_a_member_of_a_party_holds_that_booking_as_their_own(
    catalog: httpx.AsyncClient,
) -> None:
    m = member()
    made = (await catalog.post("/v1/bookings", json=party(person(), [m]))).json()
    alone = {**m, "phone": person()["phone"]}
    refused = await assert_refused(
        catalog, booking_body(alone, THURSDAY), 409, "active_booking_exists"
    )
    assert refused["booking_id"] == made["id"]
    again = await assert_refused(
        catalog, party(person(), [m], date=THURSDAY), 409, "active_booking_exists"
    )
    assert again["booking_id"] == made["id"]
    # Once the party is cancelled, the member books, the next day (the party was today's).
    assert (await cancel(catalog, made["id"], by="office")).status_code == 200
    await assert_refused(catalog, booking_body(alone, THURSDAY), 409, "daily_limit_reached")
    await set_clock(catalog, "2026-11-24T08:00:00+08:00")
    await book(catalog, alone, THURSDAY)


async def test_a_blocked_member_refuses_the_party(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    m = person()
    async with with_settings(settings, bookings_per_day=5) as client:
        for day in (WEDNESDAY, THURSDAY, "2026-11-27"):
            made = await book(client, m, day)
            assert (await cancel(client, made["id"])).status_code == 200
        body = party(person(), [member(), {k: m[k] for k in ("id_type", "id_number", "name")}])
        refused = await assert_refused(client, body, 403, "person_blocked")
        assert refused["blocked_until"] == "2026-11-24T10:00:00+08:00"
        assert (await run_job(client, "reconcile"))["windows_corrected"] == 0


async def test_a_member_who_booked_today_refuses_the_party_by_the_daily_limit(
    catalog: httpx.AsyncClient,
) -> None:
    await add_service(catalog, OTHER_SERVICE)
    m = person()
    await book(catalog, m, THURSDAY, service_id=OTHER_SERVICE)
    body = party(person(), [{k: m[k] for k in ("id_type", "id_number", "name")}])
    await assert_refused(catalog, body, 409, "daily_limit_reached")


async def test_the_rebook_cooldown_holds_every_identity_of_a_cancelled_party(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    who, m = person(), member()
    async with with_settings(settings, rebook_cooldown_minutes=120, bookings_per_day=5) as client:
        made = (await client.post("/v1/bookings", json=party(who, [m]))).json()
        assert (await cancel(client, made["id"])).status_code == 200
        for body in (
            booking_body({**m, "phone": person()["phone"]}, THURSDAY),
            party(person(), [m], date=THURSDAY),
            booking_body(who, THURSDAY),
        ):
            found = await assert_refused(client, body, 409, "rebook_cooldown")
            assert found["retry_at"] == "2026-11-23T12:00:00+08:00"


async def test_members_required_by_the_setting(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    async with with_settings(settings, party_members_required=True) as client:
        refused = await assert_refused(client, booking_body(party_size=2), 422, "not_bookable")
        assert "members" in refused["detail"]
        await book(client)
        await book(client, party_size=2, members=[member()])


async def test_a_retry_replays_the_party_as_stored(catalog: httpx.AsyncClient) -> None:
    body = party(person(), [member(), member()])
    headers = {"Idempotency-Key": "party-1"}
    first = await catalog.post("/v1/bookings", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await catalog.post("/v1/bookings", json=body, headers=headers)
    assert (again.status_code, again.json()) == (201, first.json())
    assert await remaining(catalog, WEDNESDAY, "09:00") == 0


async def only_one_books(settings: Settings, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send the bookings at once, through a worker that really overlaps them: exactly one is
    made, every other is refused as holding a booking of the service; the one made."""
    async with overlapping_client(settings) as client:
        answers = await asyncio.gather(*(client.post("/v1/bookings", json=b) for b in bodies))
    made = [a.json() for a in answers if a.status_code == 201]
    assert len(made) == 1, [a.text for a in answers]
    for answer in answers:
        if answer.status_code != 201:
            problem(answer, 409, "active_booking_exists")
    return made


async def test_two_parties_sharing_a_member_at_once_never_both_book(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    for _ in range(4):
        shared = member()
        bodies = [party(person(), [shared, member()], date=day) for day in (WEDNESDAY, THURSDAY)]
        before = await seats(catalog)
        made = await only_one_books(settings, bodies)
        after = await seats(catalog)
        # Only the booked party's seats are taken, in Postgres and at the gate alike.
        assert {k: before[k] - after[k] for k in before if before[k] != after[k]} == {
            (made[0]["date"], made[0]["start"]): 3
        }
        assert await bookings_of(catalog, shared) == made
        assert (await run_job(catalog, "reconcile"))["windows_corrected"] == 0
        assert (await cancel(catalog, made[0]["id"], by="office")).status_code == 200


async def test_a_party_and_the_member_alone_at_once_never_both_book(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    for _ in range(5):
        shared = member()
        alone = {**shared, "phone": person()["phone"]}
        bodies = [party(person(), [shared]), booking_body(alone, THURSDAY)]
        made = await only_one_books(settings, bodies)
        assert [b["id"] for b in await bookings_of(catalog, shared)] == [made[0]["id"]]
        assert (await cancel(catalog, made[0]["id"], by="office")).status_code == 200


async def test_the_openapi_document_describes_members(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    members = schemas["BookingIn"]["properties"]["members"]
    assert members["type"] == "array"
    assert members["maxItems"] == 99
    assert members["items"] == {"$ref": "#/components/schemas/MemberIn"}
    member_in = schemas["MemberIn"]
    assert set(member_in["properties"]) == {"id_type", "id_number", "name"}
    assert member_in["additionalProperties"] is False
    out = schemas["BookingOut"]["properties"]["members"]
    assert out["items"] == {"$ref": "#/components/schemas/PersonOut"}


async def test_a_party_is_purged_with_its_members(catalog: httpx.AsyncClient) -> None:
    who, m = person(), member()
    made = (await catalog.post("/v1/bookings", json=party(who, [m]))).json()
    kept = await run_job(catalog, "purge")
    assert (kept["bookings"], kept["people"]) == (0, 0)
    assert await bookings_of(catalog, m) == [made]
    await set_clock(catalog, "2027-05-25T10:00:00+08:00")  # 181 days after the window
    purged = await run_job(catalog, "purge")
    assert (purged["bookings"], purged["people"]) == (1, 2)
    assert await bookings_of(catalog, m) == []
    problem(await catalog.get(f"/v1/bookings/{made['id']}"), 404, "not_found")
