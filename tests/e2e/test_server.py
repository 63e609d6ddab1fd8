"""The real server: `slots-service serve` under granian with two worker processes, driven over
TCP like the platform's callers do."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    ADMIN_KEY,
    NOW,
    OFFICE,
    OFFICE_ID,
    SERVICE,
    SERVICE_ID,
    WEDNESDAY,
    booking_body,
    person,
)
from tests.e2e import serving


@pytest.fixture
def server(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    served = serving.serve(database_url, redis_url, tmp_path / "serve.log")
    try:
        yield served.base
    finally:
        assert served.stop() is not None
        assert served.errors() == ""


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=server,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        limits=limits,
        timeout=30,
    ) as client:
        assert (await client.put("/v1/admin/clock", json={"now": NOW})).status_code == 200
        assert (await client.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
        assert (await client.put(f"/v1/offices/{OFFICE_ID}", json=OFFICE)).status_code == 200
        yield client


async def test_120_concurrent_bookings_for_3_seats_leave_exactly_3(
    http: httpx.AsyncClient,
) -> None:
    responses = await asyncio.gather(
        *(http.post("/v1/bookings", json=booking_body(person())) for _ in range(120))
    )
    outcomes = Counter("created" if r.status_code == 201 else r.json()["code"] for r in responses)
    assert outcomes == Counter({"created": 3, "slot_full": 117})
    day = (
        await http.get(
            f"/v1/offices/{OFFICE_ID}/availability",
            params={"service": SERVICE_ID, "from": WEDNESDAY, "to": WEDNESDAY},
        )
    ).json()["days"][0]
    assert day["windows"][0]["remaining"] == 0
    created = [r.json()["id"] for r in responses if r.status_code == 201]
    feed = (await http.get("/v1/events", params={"limit": 1000})).json()["items"]
    assert sorted(e["booking"]["id"] for e in feed if e["type"] == "booking.created") == sorted(
        created
    )


async def test_every_worker_sees_the_same_test_clock(http: httpx.AsyncClient) -> None:
    instant = "2026-11-24T18:01:00+08:00"
    assert (await http.put("/v1/admin/clock", json={"now": instant})).status_code == 200
    seen = await asyncio.gather(*(http.get("/v1/admin/clock") for _ in range(40)))
    assert {r.json()["now"] for r in seen} == {instant}


async def test_metrics_count_bookings_by_outcome(http: httpx.AsyncClient) -> None:
    await http.post("/v1/bookings", json=booking_body(person()))
    text = ""
    for _ in range(6):  # two workers: each keeps its own registry; ask until we hit the one
        text = (await http.get("/metrics")).text
        if 'slots_bookings_total{outcome="created"}' in text:
            break
    assert 'slots_bookings_total{outcome="created"} 1.0' in text
    assert "slots_http_request_duration_seconds_bucket" in text
