"""API 1.1 rebook cooldown: after a person's own cancellation of a booking, that person books
the service again only once SLOTS_REBOOK_COOLDOWN_MINUTES have passed (409 `rebook_cooldown`
with `retry_at`, nothing taken); an office's cancellation or a closure starts none."""

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
    overlapping_client,
    problem,
    seats,
)
from tests.api.test_bookings import OTHER_SERVICE, add_service
from tests.conftest import OFFICE_ID, TUESDAY, WEDNESDAY, booking_body, person, set_clock

THURSDAY = "2026-11-26"


def cooling(settings: Settings, **more: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """A worker of the deployment with a 120-minute cooldown (and more settings)."""
    return overlapping_client(replace(settings, rebook_cooldown_minutes=120, **more))


async def refused(
    client: httpx.AsyncClient, who: dict[str, str], retry_at: str, date: str = THURSDAY
) -> None:
    """The person's booking is refused for the cooldown, and nothing is taken."""
    before = await seats(client)
    had = await bookings_of(client, who)
    feed, _ = await events(client)
    response = await client.post("/v1/bookings", json=booking_body(who, date))
    body = problem(response, 409, "rebook_cooldown")
    assert body["retry_at"] == retry_at
    assert await seats(client) == before
    assert await bookings_of(client, who) == had
    assert (await events(client))[0] == feed


async def test_off_by_default(catalog: httpx.AsyncClient, settings: Settings) -> None:
    who = person()
    async with overlapping_client(replace(settings, bookings_per_day=2)) as client:
        made = await book(client, who)
        assert (await cancel(client, made["id"])).status_code == 200
        await book(client, who, THURSDAY)


async def test_a_persons_cancellation_holds_off_a_new_booking_until_retry_at(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    who = person()
    async with cooling(settings, bookings_per_day=5) as client:
        made = await book(client, who)
        assert (await cancel(client, made["id"])).status_code == 200
        await refused(client, who, "2026-11-23T12:00:00+08:00")
        await refused(client, who, "2026-11-23T12:00:00+08:00", date=WEDNESDAY)
        await set_clock(client, "2026-11-23T11:59:59+08:00")
        await refused(client, who, "2026-11-23T12:00:00+08:00")
        await set_clock(client, "2026-11-23T12:00:00+08:00")
        again = await book(client, who, THURSDAY)
        # The latest of the person's cancellations counts.
        await set_clock(client, "2026-11-23T13:00:00+08:00")
        assert (await cancel(client, again["id"])).status_code == 200
        await refused(client, who, "2026-11-23T15:00:00+08:00")


async def test_it_is_checked_before_the_daily_limit(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    who = person()
    async with cooling(settings) as client:
        made = await book(client, who)
        assert (await cancel(client, made["id"])).status_code == 200
        await refused(client, who, "2026-11-23T12:00:00+08:00")
        await set_clock(client, "2026-11-23T12:00:00+08:00")
        problem(
            await client.post("/v1/bookings", json=booking_body(who)), 409, "daily_limit_reached"
        )
        await set_clock(client, "2026-11-24T08:00:00+08:00")
        await book(client, who, THURSDAY)


async def test_it_holds_only_that_person_and_that_service(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    await add_service(catalog, OTHER_SERVICE)
    who = person()
    async with cooling(settings, bookings_per_day=5) as client:
        made = await book(client, who)
        assert (await cancel(client, made["id"])).status_code == 200
        other = await book(client, who, THURSDAY, service_id=OTHER_SERVICE)
        assert other["service_id"] == OTHER_SERVICE
        await book(client, person(), THURSDAY)
        await refused(client, who, "2026-11-23T12:00:00+08:00")


async def test_an_office_cancellation_or_a_closure_starts_none(
    catalog: httpx.AsyncClient, settings: Settings
) -> None:
    who, closed = person(), person()
    async with cooling(settings, bookings_per_day=5) as client:
        made = await book(client, who)
        assert (await cancel(client, made["id"], by="office")).status_code == 200
        await book(client, who, THURSDAY)
        on_tuesday = await book(client, closed, TUESDAY)
        response = await client.put(
            f"/v1/offices/{OFFICE_ID}/closures/{TUESDAY}", json={"reason": "power cut"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["cancelled_bookings"] == 1
        cancelled = (await bookings_of(client, closed))[0]
        assert (cancelled["id"], cancelled["cancelled_by"]) == (on_tuesday["id"], "office")
        await book(client, closed, THURSDAY)
