"""Steps the booking contract tests take through the real app, each checking its own status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx

from slots_service.app import create_app
from slots_service.config import Settings
from tests.conftest import ADMIN_KEY, OFFICE_ID, SERVICE_ID, booking_body, person, set_clock

PROBLEM = "application/problem+json"

Seats = dict[tuple[str, str], int]


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The RFC 9457 body of an expected error, checked for its fixed members."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    return body


async def book(
    client: httpx.AsyncClient,
    who: dict[str, str] | None = None,
    date: str = "2026-11-25",
    start: str = "09:00",
    **extra: Any,
) -> dict[str, Any]:
    """A booking that must succeed (201)."""
    who = who or person()
    response = await client.post("/v1/bookings", json=booking_body(who, date, start, **extra))
    assert response.status_code == 201, response.text
    assert who["id_number"] not in response.text
    created: dict[str, Any] = response.json()
    return created


async def seats(client: httpx.AsyncClient, service: str = SERVICE_ID) -> Seats:
    """Seats remaining of every window in the horizon, by (date, start)."""
    response = await client.get(
        f"/v1/offices/{OFFICE_ID}/availability", params={"service": service}
    )
    assert response.status_code == 200, response.text
    return {
        (day["date"], window["start"]): window["remaining"]
        for day in response.json()["days"]
        for window in day["windows"]
    }


async def remaining(client: httpx.AsyncClient, date: str, start: str) -> int:
    return (await seats(client))[(date, start)]


async def search(client: httpx.AsyncClient, **by: str) -> list[dict[str, Any]]:
    response = await client.post("/v1/bookings/search", json=by)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def bookings_of(client: httpx.AsyncClient, who: dict[str, str]) -> list[dict[str, Any]]:
    return await search(client, id_type=who["id_type"], id_number=who["id_number"])


async def standing(client: httpx.AsyncClient, who: dict[str, str]) -> dict[str, Any]:
    response = await client.post(
        "/v1/people/standing", json={"id_type": who["id_type"], "id_number": who["id_number"]}
    )
    assert response.status_code == 200, response.text
    assert who["id_number"] not in response.text
    found: dict[str, Any] = response.json()
    return found


async def get(client: httpx.AsyncClient, booking_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/bookings/{booking_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def cancel(
    client: httpx.AsyncClient, booking_id: str, by: str = "person", reason: str = "plans changed"
) -> httpx.Response:
    return await client.post(f"/v1/bookings/{booking_id}/cancel", json={"by": by, "reason": reason})


async def run_job(client: httpx.AsyncClient, job: str) -> dict[str, int]:
    response = await client.post(f"/v1/admin/jobs/{job}")
    assert response.status_code == 200, response.text
    assert response.json()["job"] == job
    result: dict[str, int] = response.json()["result"]
    return result


async def events(
    client: httpx.AsyncClient, after: str | None = None, limit: int = 1000
) -> tuple[list[dict[str, Any]], str]:
    """One page of the feed: (items, next)."""
    params: dict[str, str | int] = {"limit": limit}
    if after is not None:
        params["after"] = after
    response = await client.get("/v1/events", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "next"}
    return page["items"], page["next"]


async def no_show(client: httpx.AsyncClient, who: dict[str, str], date: str, after: str) -> str:
    """Book `date` 09:00, let it pass unattended, sweep at `after`; returns the booking id."""
    made = await book(client, who, date)
    await set_clock(client, after)
    assert (await run_job(client, "sweep-no-shows"))["no_shows"] == 1
    assert (await get(client, made["id"]))["status"] == "no_show"
    return str(made["id"])


@asynccontextmanager
async def overlapping_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another worker of the same deployment, served in the test's own event loop.

    The Litestar test client runs one request at a time on its own thread; through this
    client, gathered requests really overlap."""
    app = create_app(settings)
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=cast(Any, app)),  # Litestar is an ASGI app
            base_url="http://testserver.local",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as client,
    ):
        yield client
