"""API 1.1 reschedule limit: `reschedules` on the booking, at most SLOTS_MAX_RESCHEDULES moves,
the next one 409 `reschedule_limit_reached` with nothing changed, even when two run at once."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

import httpx

from slots_service.config import Settings
from tests.api.steps import book, events, get, overlapping_client, problem, seats
from tests.conftest import WEDNESDAY

THURSDAY = "2026-11-26"
FRIDAY = "2026-11-27"


async def reschedule(
    client: httpx.AsyncClient, booking_id: str, date: str, start: str
) -> httpx.Response:
    return await client.post(
        f"/v1/bookings/{booking_id}/reschedule", json={"date": date, "start": start}
    )


def once(settings: Settings) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """Another worker of the deployment, with SLOTS_MAX_RESCHEDULES=1."""
    return overlapping_client(replace(settings, max_reschedules=1))


async def test_a_new_booking_has_no_reschedules(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    assert made["reschedules"] == 0
    assert (await get(catalog, made["id"]))["reschedules"] == 0


async def test_the_fourth_reschedule_is_refused_and_changes_nothing(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    moves = [(WEDNESDAY, "09:30"), (THURSDAY, "09:00"), (THURSDAY, "14:00")]
    for n, (date, start) in enumerate(moves, start=1):
        response = await reschedule(catalog, made["id"], date, start)
        assert response.status_code == 200, response.text
        assert (response.json()["date"], response.json()["start"]) == (date, start)
        assert response.json()["reschedules"] == n
    held = await get(catalog, made["id"])
    assert held["reschedules"] == 3
    before = await seats(catalog)
    feed, _ = await events(catalog)
    body = problem(
        await reschedule(catalog, made["id"], FRIDAY, "09:00"), 409, "reschedule_limit_reached"
    )
    assert "3" in body["detail"]
    assert await get(catalog, made["id"]) == held
    assert await seats(catalog) == before
    assert (await events(catalog))[0] == feed
    moved = [e["booking"]["reschedules"] for e in feed if e["type"] == "booking.rescheduled"]
    assert moved == [1, 2, 3]
    # Cancelling is still allowed; the count stays on the booking.
    cancelled = await catalog.post(f"/v1/bookings/{made['id']}/cancel", json={"by": "person"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["reschedules"] == 3


async def test_moving_to_the_window_held_counts_nothing(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    for _ in range(4):
        response = await reschedule(catalog, made["id"], WEDNESDAY, "09:00")
        assert response.status_code == 200, response.text
        assert response.json() == made


async def test_the_limit_follows_the_setting(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    made = await book(catalog)
    async with once(settings) as client:
        assert (await reschedule(client, made["id"], THURSDAY, "09:00")).status_code == 200
        refused = await reschedule(client, made["id"], FRIDAY, "09:00")
        problem(refused, 409, "reschedule_limit_reached")
    assert (await get(catalog, made["id"]))["date"] == THURSDAY


async def test_two_reschedules_at_once_never_both_pass_the_limit(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    made = await book(catalog)
    before = await seats(catalog)
    async with once(settings) as client:
        answers = await asyncio.gather(
            reschedule(client, made["id"], THURSDAY, "09:00"),
            reschedule(client, made["id"], FRIDAY, "09:00"),
        )
    moved = [a.json() for a in answers if a.status_code == 200]
    assert len(moved) == 1, [a.text for a in answers]
    for answer in answers:
        if answer.status_code != 200:
            problem(answer, 409, "reschedule_limit_reached")
    held = await get(catalog, made["id"])
    assert held == moved[0]
    assert held["reschedules"] == 1
    after = await seats(catalog)
    assert after[(WEDNESDAY, "09:00")] == before[(WEDNESDAY, "09:00")] + 1
    target = (held["date"], held["start"])
    other = (FRIDAY, "09:00") if target == (THURSDAY, "09:00") else (THURSDAY, "09:00")
    assert after[target] == before[target] - 1
    assert after[other] == before[other]
