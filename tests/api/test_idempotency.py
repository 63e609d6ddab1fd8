"""Idempotency-Key on POST /v1/bookings: a retry replays the first answer and books nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from slots_service import booking, errors, idempotency
from slots_service.config import Settings
from slots_service.db import create_pool
from slots_service.models import BookingIn
from tests.api.steps import (
    bookings_of,
    cancel,
    events,
    overlapping_client,
    problem,
    remaining,
    seats,
)
from tests.conftest import (
    ADMIN_KEY,
    NOW,
    TUESDAY,
    WEDNESDAY,
    WRITER_KEY,
    booking_body,
    local,
    person,
    set_clock,
)


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


async def _gate_answers(client: httpx.AsyncClient) -> Counter[str]:
    text = (await client.get("/metrics")).text
    return Counter(
        {
            s.labels["result"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "slots_redis_gate_total"
        }
    )


async def test_a_keys_duplicates_take_no_seat_at_the_gate(catalog: httpx.AsyncClient) -> None:
    """Only a key's first request takes its seats at the gate; the others are answered by the
    key. (Ten duplicates at once of a window of three once took all three seats at the gate,
    seven were refused there as full, and one of those refusals, kept for the key first,
    answered all ten: no booking, three seats free.)"""
    body = booking_body()
    before = await _gate_answers(catalog)
    first = await post(catalog, body, "once-1")
    assert first.status_code == 201, first.text
    for _ in range(3):
        again = await post(catalog, body, "once-1")
        assert (again.status_code, again.content) == (201, first.content)
    gate = await _gate_answers(catalog)
    gate.subtract(before)
    assert (gate["taken"], gate["duplicate"]) == (1, 3)
    assert await remaining(catalog, WEDNESDAY, "09:00") == 2


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
            assert 1 <= int(answer.headers["Retry-After"]) <= settings.idempotency_lease_s
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


# ---------------------------------------------------------------- a claim's lease


def keyed_as_the_api(body: dict[str, Any], key: str) -> idempotency.Keyed:
    """The key of the admin caller's request with this body, as the route computes it."""
    data = msgspec.json.decode(json.dumps(body).encode(), type=BookingIn)
    return idempotency.Keyed(
        hashlib.sha256(ADMIN_KEY.encode()).digest(),
        key,
        idempotency.request_hash(msgspec.json.encode(data)),
        timedelta(hours=24),
    )


async def test_a_claim_whose_request_died_is_taken_over_after_its_lease(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    """A request that claimed its key and then died (its process killed: no answer, no
    release) holds the key only for its lease, counted by Postgres's clock; the test clock
    stands still the whole time."""
    who, long_who = person(), person()
    body, long_body = booking_body(who), booking_body(long_who)
    pool = await create_pool(settings.database_url, 2)
    try:
        dead = await idempotency.claim(pool, keyed_as_the_api(body, "dead-1"), local(NOW), 1)
        held = await idempotency.claim(pool, keyed_as_the_api(long_body, "dead-2"), local(NOW), 30)
        assert isinstance(dead, idempotency.Claim)
        assert isinstance(held, idempotency.Claim)
        async with overlapping_client(replace(settings, idempotency_lease_s=1)) as client:
            running = await post(client, body, "dead-1")
            problem(running, 409, "idempotency_in_progress")
            assert running.headers["Retry-After"] == "1"
            # Retry-After says how long the lease has left, whatever this process's setting.
            long = await post(client, long_body, "dead-2")
            problem(long, 409, "idempotency_in_progress")
            assert 29 <= int(long.headers["Retry-After"]) <= 30
            assert await bookings_of(catalog, who) == []
            await asyncio.sleep(1.1)
            retried = await post(client, body, "dead-1")
            assert retried.status_code == 201, retried.text
            # The dead request's late words change nothing: the key is the retry's now.
            await idempotency.finish(pool, dead, errors.SlotFull("late"))
            await idempotency.release(pool, dead)
            replay = await post(client, body, "dead-1")
            assert (replay.status_code, replay.content) == (201, retried.content)
            problem(await post(client, long_body, "dead-2"), 409, "idempotency_in_progress")
    finally:
        await pool.close()
    assert [b["id"] for b in await bookings_of(catalog, who)] == [retried.json()["id"]]
    assert await bookings_of(catalog, long_who) == []
    assert await remaining(catalog, WEDNESDAY, "09:00") == 2
    assert len(await created_events(catalog)) == 1


async def test_a_request_slower_than_its_lease_books_nothing_once_taken_over(
    catalog: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request stalls between its claim and its booking statement past its lease; a
    retry takes the key over and books. When the first one's statement finally runs, its claim
    is no longer its own: it books nothing and stores nothing. The person may hold two
    bookings here, so only the claim stands between the two requests and a second booking."""
    record = booking._record
    calls = 0

    async def stalled_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(2.5)
        return await record(*args)

    monkeypatch.setattr(booking, "_record", stalled_once)
    lenient = replace(
        settings, idempotency_lease_s=1, active_bookings_per_service=2, bookings_per_day=2
    )
    who = person()
    body = booking_body(who)
    async with overlapping_client(lenient) as client:
        slow = asyncio.create_task(post(client, body, "slow-1"))
        await asyncio.sleep(1.5)
        retry = await post(client, body, "slow-1")
        assert retry.status_code == 201, retry.text
        lost = await slow
        problem(lost, 409, "idempotency_in_progress")
        replay = await post(client, body, "slow-1")
        assert (replay.status_code, replay.content) == (201, retry.content)
    assert calls == 2
    assert [b["id"] for b in await bookings_of(catalog, who)] == [retry.json()["id"]]
    assert await remaining(catalog, WEDNESDAY, "09:00") == 2  # the loser's gate seat came back
    assert len(await created_events(catalog)) == 1
