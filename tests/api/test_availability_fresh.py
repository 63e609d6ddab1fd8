"""Availability kept in a process is never staler than its bound (availability.FRESH_S): a
seat booked, or freed, through any worker shows in every worker's availability once the bound
has passed, and at once in the worker that answered the write."""

from __future__ import annotations

import asyncio

import httpx

from slots_service.availability import FRESH_S
from slots_service.config import Settings
from tests.api.steps import book, cancel, overlapping_client, problem, remaining
from tests.conftest import CHECKIN_KEY, OFFICE_ID, READER_KEY, SERVICE_ID, WEDNESDAY


async def test_a_booking_shows_everywhere_within_the_bound(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    async with overlapping_client(settings) as other:  # a second worker, its own cache
        before = await remaining(other, WEDNESDAY, "09:00")  # now kept by the other worker
        assert before == await remaining(catalog, WEDNESDAY, "09:00")
        made = await book(catalog, date=WEDNESDAY, start="09:00")
        # The worker that answered the booking shows it at once.
        assert await remaining(catalog, WEDNESDAY, "09:00") == before - 1
        # Any other worker once the bound has passed since the booking was answered.
        await asyncio.sleep(FRESH_S)
        assert await remaining(other, WEDNESDAY, "09:00") == before - 1
        await cancel(catalog, made["id"])
        assert await remaining(catalog, WEDNESDAY, "09:00") == before
        await asyncio.sleep(FRESH_S)
        assert await remaining(other, WEDNESDAY, "09:00") == before


async def test_a_write_in_a_worker_drops_what_it_kept(catalog: httpx.AsyncClient) -> None:
    """Read, book, read again at once, many times over: every read after a 201 shows it."""
    seats = await remaining(catalog, WEDNESDAY, "09:30")
    for _ in range(seats):
        await book(catalog, date=WEDNESDAY, start="09:30")
        seats -= 1
        assert await remaining(catalog, WEDNESDAY, "09:30") == seats
    assert seats == 0


async def test_a_kept_answer_goes_only_to_a_key_that_may_read_it(
    catalog: httpx.AsyncClient,
) -> None:
    url = f"/v1/offices/{OFFICE_ID}/availability"
    params = {"service": SERVICE_ID, "from": WEDNESDAY, "to": WEDNESDAY}
    first = await catalog.get(url, params=params)
    again = await catalog.get(url, params=params)
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert first.headers["content-type"] == again.headers["content-type"]
    assert first.headers["x-request-id"] != again.headers["x-request-id"]
    wrong = await catalog.get(url, params=params, headers={"Authorization": "Bearer wrong"})
    problem(wrong, 401, "unauthorized")
    no_scope = await catalog.get(
        url, params=params, headers={"Authorization": f"Bearer {CHECKIN_KEY}"}
    )
    problem(no_scope, 403, "forbidden")
    reader = await catalog.get(
        url, params=params, headers={"Authorization": f"Bearer {READER_KEY}"}
    )
    assert reader.status_code == 200
    assert reader.content == first.content
