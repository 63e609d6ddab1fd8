"""API 1.1 no-show waiver: POST /v1/bookings/{id}/waive-no-show (admin) keeps the booking
`no_show`, stamps `no_show_waived_at`, stops it counting (standing, the block, recomputed at
once) and emits `booking.no_show_waived`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import httpx

from slots_service.config import Settings
from tests.api.steps import (
    book,
    bookings_of,
    cancel,
    events,
    get,
    no_show,
    overlapping_client,
    problem,
    run_job,
    seats,
    standing,
)
from tests.conftest import (
    TUESDAY,
    WEDNESDAY,
    WRITER_KEY,
    booking_body,
    person,
    set_clock,
)

THURSDAY = "2026-11-26"
FRIDAY = "2026-11-27"
NEXT_MONDAY = "2026-11-30"


async def waive(
    client: httpx.AsyncClient, booking_id: str, reason: str = "hospital note seen", **headers: str
) -> httpx.Response:
    return await client.post(
        f"/v1/bookings/{booking_id}/waive-no-show", json={"reason": reason}, headers=headers
    )


async def three_no_shows(client: httpx.AsyncClient, who: dict[str, str]) -> list[str]:
    """No-shows on Tuesday, Wednesday and Thursday: the person is blocked from Thursday on."""
    return [
        await no_show(client, who, TUESDAY, "2026-11-24T10:01:00+08:00"),
        await no_show(client, who, WEDNESDAY, "2026-11-25T10:01:00+08:00"),
        await no_show(client, who, THURSDAY, "2026-11-26T10:01:00+08:00"),
    ]


def of_type(feed: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in feed if e["type"] == kind]


async def test_a_waived_no_show_lifts_the_block_at_once(catalog: httpx.AsyncClient) -> None:
    who = person()
    missed = await three_no_shows(catalog, who)
    blocked = await standing(catalog, who)
    assert (blocked["no_shows"], blocked["blocked_until"]) == (3, "2027-05-25T09:00:00+08:00")
    problem(
        await catalog.post("/v1/bookings", json=booking_body(who, FRIDAY)), 403, "person_blocked"
    )

    before = await get(catalog, missed[1])
    assert before["no_show_waived_at"] is None
    response = await waive(catalog, missed[1])
    assert response.status_code == 200, response.text
    waived = response.json()
    assert waived["status"] == "no_show"
    assert waived["no_show_waived_at"] == "2026-11-26T10:01:00+08:00"
    assert {k: v for k, v in waived.items() if k != "no_show_waived_at"} == {
        k: v for k, v in before.items() if k != "no_show_waived_at"
    }
    assert await get(catalog, missed[1]) == waived
    assert await standing(catalog, who) == {
        "no_shows": 2,
        "cancellations": 0,
        "blocked_until": None,
        "active_bookings": [],
    }
    feed, _ = await events(catalog)
    assert [e["booking"] for e in of_type(feed, "booking.no_show_waived")] == [waived]
    # The person books again at once.
    await book(catalog, who, FRIDAY)


async def test_waiving_again_changes_nothing(catalog: httpx.AsyncClient) -> None:
    who = person()
    missed = await no_show(catalog, who, TUESDAY, "2026-11-24T10:01:00+08:00")
    first = await waive(catalog, missed)
    assert first.status_code == 200, first.text
    feed, _ = await events(catalog)
    await set_clock(catalog, "2026-11-24T12:00:00+08:00")
    again = await waive(catalog, missed, reason="asked twice")
    assert (again.status_code, again.json()) == (200, first.json())
    assert (await events(catalog))[0] == feed
    assert len(of_type(feed, "booking.no_show_waived")) == 1


def loose(settings: Settings) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """A worker whose people may hold and make five bookings a day: a fourth no-show, and
    cancellations beside a no-show, without moving days."""
    return overlapping_client(replace(settings, bookings_per_day=5, active_bookings_per_service=5))


async def test_with_enough_no_shows_left_the_block_stays_and_may_end_sooner(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    who = person()
    async with loose(settings) as client:
        made = [await book(client, who, day) for day in (TUESDAY, WEDNESDAY, THURSDAY, FRIDAY)]
        await set_clock(client, "2026-11-27T10:01:00+08:00")
        assert (await run_job(client, "sweep-no-shows"))["no_shows"] == 4
        assert (await standing(client, who))["blocked_until"] == "2027-05-26T09:00:00+08:00"
        # The last one waived: the block runs from the third.
        assert (await waive(client, made[3]["id"])).status_code == 200
        found = await standing(client, who)
        assert (found["no_shows"], found["blocked_until"]) == (3, "2027-05-25T09:00:00+08:00")
        response = await client.post("/v1/bookings", json=booking_body(who, NEXT_MONDAY))
        assert problem(response, 403, "person_blocked")["blocked_until"] == found["blocked_until"]
        # One more waived: two are too few.
        assert (await waive(client, made[0]["id"])).status_code == 200
        assert (await standing(client, who))["blocked_until"] is None
        await book(client, who, NEXT_MONDAY)


async def test_a_block_for_cancellations_stays(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    who = person()
    async with loose(settings) as client:
        missed = await no_show(client, who, TUESDAY, "2026-11-24T10:01:00+08:00")
        for day in (WEDNESDAY, THURSDAY, FRIDAY):
            made = await book(client, who, day)
            assert (await cancel(client, made["id"])).status_code == 200
        until = "2026-11-25T10:01:00+08:00"
        assert (await standing(client, who))["blocked_until"] == until
        assert (await waive(client, missed)).status_code == 200
        assert (await standing(client, who))["blocked_until"] == until
        response = await client.post("/v1/bookings", json=booking_body(who, NEXT_MONDAY))
        assert problem(response, 403, "person_blocked")["blocked_until"] == until


async def test_only_a_no_show_can_be_waived(catalog: httpx.AsyncClient) -> None:
    booked, cancelled = await book(catalog), await book(catalog)
    assert (await cancel(catalog, cancelled["id"])).status_code == 200
    cancelled = await get(catalog, cancelled["id"])
    before = await seats(catalog)
    feed, _ = await events(catalog)
    for made in (booked, cancelled):
        problem(await waive(catalog, made["id"]), 409, "invalid_state")
        assert (await get(catalog, made["id"]))["no_show_waived_at"] is None
    assert await get(catalog, booked["id"]) == booked
    assert await get(catalog, cancelled["id"]) == cancelled
    assert await seats(catalog) == before
    assert (await events(catalog))[0] == feed
    problem(await waive(catalog, "ZZZZZZZZZZZZ"), 404, "not_found")


async def test_only_an_admin_waives(catalog: httpx.AsyncClient) -> None:
    who = person()
    missed = await no_show(catalog, who, TUESDAY, "2026-11-24T10:01:00+08:00")
    response = await waive(catalog, missed, Authorization=f"Bearer {WRITER_KEY}")
    problem(response, 403, "forbidden")
    assert (await get(catalog, missed))["no_show_waived_at"] is None
    bad = await catalog.post(f"/v1/bookings/{missed}/waive-no-show", json={"reason": "x" * 501})
    problem(bad, 400, "invalid_request")
    assert (await get(catalog, missed))["no_show_waived_at"] is None


async def test_a_waived_no_show_never_counts_towards_a_later_block(
    catalog: httpx.AsyncClient,
) -> None:
    who = person()
    first = await no_show(catalog, who, TUESDAY, "2026-11-24T10:01:00+08:00")
    assert (await waive(catalog, first)).status_code == 200
    await no_show(catalog, who, WEDNESDAY, "2026-11-25T10:01:00+08:00")
    await no_show(catalog, who, THURSDAY, "2026-11-26T10:01:00+08:00")
    assert (await standing(catalog, who))["no_shows"] == 2
    assert (await standing(catalog, who))["blocked_until"] is None
    await book(catalog, who, FRIDAY)
    statuses = [b["status"] for b in await bookings_of(catalog, who)]
    assert statuses == ["booked", "no_show", "no_show", "no_show"]
