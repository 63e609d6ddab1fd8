"""Idempotency-Key on POST /v1/bookings: a retry replays the first answer and books nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from slots_service.config import Settings
from tests.api.steps import (
    bookings_of,
    cancel,
    events,
    overlapping_client,
    problem,
    remaining,
    seats,
)
from tests.conftest import TUESDAY, WEDNESDAY, WRITER_KEY, booking_body, person, set_clock


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], key: str, **headers: str
) -> httpx.Response:
    return await client.post("/v1/bookings", json=body, headers={"Idempotency-Key": key, **headers})


async def created_events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items, _ = await events(client)
    return [e for e in items if e["type"] == "booking.created"]


async def test_retry_with_the_same_key_and_body_replays_the_201(
    catalog: httpx.AsyncClient,
) -> None:
    who = person()
    body = booking_body(who)
    first = await post(catalog, body, "retry-1")
    assert first.status_code == 201, first.text
    for _ in range(2):
        again = await post(catalog, body, "retry-1")
        assert again.status_code == 201
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"]
    assert [b["id"] for b in await bookings_of(catalog, who)] == [first.json()["id"]]
    assert await remaining(catalog, WEDNESDAY, "09:00") == 2
    assert len(await created_events(catalog)) == 1


async def test_same_key_with_another_body_is_idempotency_key_reused(
    catalog: httpx.AsyncClient,
) -> None:
    who = person()
    first = await post(catalog, booking_body(who), "reused-1")
    assert first.status_code == 201
    before = await seats(catalog)
    other = person()
    for body in (booking_body(who, start="09:30"), booking_body(other)):
        problem(await post(catalog, body, "reused-1"), 422, "idempotency_key_reused")
    assert await seats(catalog) == before
    assert await bookings_of(catalog, other) == []
    # The key still replays its first answer.
    again = await post(catalog, booking_body(who), "reused-1")
    assert (again.status_code, again.content) == (201, first.content)


async def test_a_replayed_refusal_stays_the_same(catalog: httpx.AsyncClient) -> None:
    holders = [
        (await post(catalog, booking_body(date=TUESDAY, start="14:00"), f"h{i}")).json()
        for i in range(2)
    ]
    late = booking_body(date=TUESDAY, start="14:00")
    refused = await post(catalog, late, "late-1")
    first = problem(refused, 409, "slot_full")
    # A seat comes free, but the key keeps its first answer: the caller asked once.
    assert (await cancel(catalog, holders[0]["id"])).status_code == 200
    assert await remaining(catalog, TUESDAY, "14:00") == 1
    replay = await post(catalog, late, "late-1")
    assert problem(replay, 409, "slot_full") == first
    assert replay.content == refused.content
    assert await bookings_of(catalog, late["person"]) == []
    assert await remaining(catalog, TUESDAY, "14:00") == 1
    # A new key is a new request.
    fresh = await post(catalog, late, "late-2")
    assert fresh.status_code == 201, fresh.text


async def test_a_bad_request_is_not_kept_under_the_key(catalog: httpx.AsyncClient) -> None:
    body = {**booking_body(), "party_size": 0}
    problem(await post(catalog, body, "bad-1"), 400, "invalid_request")
    fixed = {**body, "party_size": 1}
    assert (await post(catalog, fixed, "bad-1")).status_code == 201


async def test_keys_are_per_api_key(catalog: httpx.AsyncClient) -> None:
    admin_body, writer_body = booking_body(), booking_body()
    mine = await post(catalog, admin_body, "shared-key")
    assert mine.status_code == 201
    theirs = await post(catalog, writer_body, "shared-key", Authorization=f"Bearer {WRITER_KEY}")
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["person"]["name"] == writer_body["person"]["name"]
    assert await remaining(catalog, WEDNESDAY, "09:00") == 1
    # And each key replays its own answer.
    replay = await post(catalog, writer_body, "shared-key", Authorization=f"Bearer {WRITER_KEY}")
    assert replay.content == theirs.content


async def test_concurrent_duplicates_book_once(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    who = person()
    body = booking_body(who)
    async with overlapping_client(settings) as client:
        answers = await asyncio.gather(*(post(client, body, "burst-1") for _ in range(10)))
    created = [a for a in answers if a.status_code == 201]
    assert created, [a.text for a in answers]
    assert len({a.content for a in created}) == 1
    for answer in answers:
        if answer.status_code != 201:
            problem(answer, 409, "idempotency_in_progress")
    found = await bookings_of(catalog, who)
    assert [b["id"] for b in found] == [created[0].json()["id"]]
    assert await remaining(catalog, WEDNESDAY, "09:00") == 2
    assert len(await created_events(catalog)) == 1
    # Once the first has finished, every retry replays it.
    late = await post(catalog, body, "burst-1")
    assert (late.status_code, late.content) == (201, created[0].content)


async def test_key_length_and_characters(catalog: httpx.AsyncClient) -> None:
    before = await seats(catalog)
    for key in ("k" * 256, "tab\there", ""):
        body = booking_body()
        problem(await post(catalog, body, key), 400, "invalid_request")
        assert await bookings_of(catalog, body["person"]) == []
    assert await seats(catalog) == before
    accepted = await post(catalog, booking_body(), "k" * 255)
    assert accepted.status_code == 201, accepted.text


async def test_a_key_is_kept_for_24_hours(catalog: httpx.AsyncClient) -> None:
    who = person()
    body = booking_body(who, "2026-11-26")
    first = await post(catalog, body, "day-1")
    assert first.status_code == 201
    assert (await cancel(catalog, first.json()["id"])).status_code == 200
    # Within 24 hours the retry gets the first answer, even though that booking is gone.
    await set_clock(catalog, "2026-11-24T09:59:00+08:00")
    replay = await post(catalog, body, "day-1")
    assert (replay.status_code, replay.content) == (201, first.content)
    assert len(await bookings_of(catalog, who)) == 1
    # After that the key is forgotten and the request runs again.
    await set_clock(catalog, "2026-11-24T10:01:00+08:00")
    again = await post(catalog, body, "day-1")
    assert again.status_code == 201, again.text
    assert again.json()["id"] != first.json()["id"]
    assert [b["status"] for b in await bookings_of(catalog, who)] == ["booked", "cancelled"]
