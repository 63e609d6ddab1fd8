"""The real server: `slots-service serve` under granian with two worker processes, driven over
TCP like the platform's callers do."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    ADMIN_KEY,
    OFFICE_ID,
    SERVICE_ID,
    WEDNESDAY,
    booking_body,
    person,
)
from tests.e2e import serving


@pytest.fixture
def served(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[serving.Served]:
    served = serving.serve(database_url, redis_url, tmp_path / "serve.log", SLOTS_DRAIN_SECONDS="0")
    try:
        yield served
    finally:
        assert served.stop() == 0
        assert served.errors() == ""


@pytest.fixture
def server(served: serving.Served) -> str:
    return served.base


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving.admin_client(server) as client:
        await serving.put_catalog(client)
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


async def test_one_scrape_counts_what_both_workers_did(
    http: httpx.AsyncClient, served: serving.Served
) -> None:
    """prometheus-client multiprocess mode: any worker's /metrics adds up every worker's."""
    headers = {"Connection": "close"}  # a connection each: both workers take some
    responses: list[httpx.Response] = []
    booked_by: set[int] = set()
    for _ in range(10):  # rounds until both workers booked (the kernel picks who accepts)
        responses += await asyncio.gather(
            *(
                http.post("/v1/bookings", json=booking_body(person()), headers=headers)
                for _ in range(20)
            )
        )
        lines = await served.request_lines()
        booked_by = {line["pid"] for line in lines if line["route"] == "/v1/bookings"}
        if len(booked_by) == 2:
            break
    assert len(booked_by) == 2, "both workers served bookings"
    attempts = len(responses)
    outcomes = Counter(r.status_code for r in responses)
    assert outcomes == Counter({201: 3, 409: attempts - 3})

    text = (await http.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("slots_bookings_total", outcome="created") == 3
    assert value("slots_bookings_total", outcome="slot_full") == attempts - 3
    # One gate answer per attempt (which ones depends on who opened the day first).
    gate = {k[1]: v for k, v in samples.items() if k[0] == "slots_redis_gate_total"}
    assert sum(gate.values()) == attempts, gate
    route = {"method": "POST", "route": "/v1/bookings"}
    assert value("slots_http_request_duration_seconds_count", **route, status="201") == 3
    assert value("slots_http_request_duration_seconds_count", **route, status="409") == attempts - 3
    assert value("slots_events_total", type="booking.created") == 3
    assert value("slots_redis_up") == 1
    assert value("slots_scheduler_leader") == 0  # no scheduler in the API processes
    pool = value("slots_db_pool_connections")
    assert pool is not None
    assert pool >= 1
    assert value("slots_db_pool_max_connections") == 2 * 20  # two live workers


async def test_every_request_is_one_json_line_with_its_request_id(
    http: httpx.AsyncClient, served: serving.Served
) -> None:
    given = await http.get("/healthz", headers={"X-Request-ID": "caller-id-1"})
    assert given.headers["x-request-id"] == "caller-id-1"
    made = await http.get("/healthz", headers={"X-Request-ID": "x" * 129})
    assert made.headers["x-request-id"] != "x" * 129
    assert len(made.headers["x-request-id"]) == 32
    created = await http.post("/v1/bookings", json=booking_body(person()))
    assert created.status_code == 201
    booking_id = created.json()["id"]
    got = await http.get(f"/v1/bookings/{booking_id}")
    assert got.status_code == 200
    asked = [given, made, created, got]
    lines = await served.request_lines(*(r.headers["x-request-id"] for r in asked))
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["caller-id-1"]["route"] == "/healthz"
    assert by_id["caller-id-1"]["status"] == 200
    assert by_id[made.headers["x-request-id"]]["route"] == "/healthz"
    booked = by_id[created.headers["x-request-id"]]
    assert booked["route"] == "/v1/bookings"
    assert booked["method"] == "POST"
    assert booked["status"] == 201
    assert booked["booking_id"] == booking_id
    assert booked["duration_ms"] > 0
    assert by_id[got.headers["x-request-id"]]["booking_id"] == booking_id
    requests = [r for r in lines if r["route"] != "unmatched"]
    assert len({r["request_id"] for r in requests}) == len(requests)  # one line per request


async def _raw(base: str, head: list[str], parts: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """One request written on a socket exactly so (header lines as given, the body in these
    writes), and its answer: (status, headers, body)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for part in parts:
            await writer.drain()
            await asyncio.sleep(0.01)  # each part its own segment
            writer.write(part)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


async def test_booking_requests_as_they_come_over_tcp(http: httpx.AsyncClient, server: str) -> None:
    """POST /v1/bookings however a caller frames it: a body in several segments, a chunked
    body (the route answers it, not the fast path), a repeated Idempotency-Key (the route's
    reading of it), a stranger refused before the body is read."""
    key = f"Authorization: Bearer {ADMIN_KEY}"
    start = ["POST /v1/bookings HTTP/1.1", f"Host: {server.removeprefix('http://')}", key]
    body = json.dumps(booking_body(person())).encode()
    json_type = "Content-Type: application/json"
    status, headers, got = await _raw(
        server, [*start, json_type, f"Content-Length: {len(body)}"], [body[:20], body[20:]]
    )
    assert status == 201, got
    assert headers["content-type"] == "application/json"
    assert json.loads(got)["status"] == "booked"

    body = json.dumps(booking_body(person())).encode()
    chunks = [b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:30], body[30:])] + [b"0\r\n\r\n"]
    status, _, got = await _raw(server, [*start, json_type, "Transfer-Encoding: chunked"], chunks)
    assert status == 201, got

    body = json.dumps(booking_body(person())).encode()
    repeated = ["Idempotency-Key: tcp-1", "Idempotency-Key: tcp-2"]
    status, _, got = await _raw(
        server, [*start, json_type, *repeated, f"Content-Length: {len(body)}"], [body]
    )
    again = await _raw(
        server, [*start, json_type, *repeated, f"Content-Length: {len(body)}"], [body]
    )
    assert status == 201, got
    assert again[0] == 201
    assert json.loads(again[2])["id"] == json.loads(got)["id"]  # replayed, one booking

    stranger = ["POST /v1/bookings HTTP/1.1", "Host: x", "Authorization: Bearer nobody"]
    status, headers, got = await _raw(server, [*stranger, "Content-Length: 5"], [b"{oops"])
    assert status == 401
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(got)["code"] == "unauthorized"
