"""API keys and scopes: 401 without a known key, 403 without the scope, open operations routes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from slots_service.app import create_app
from tests.api.steps import book, problem, seats
from tests.conftest import (
    ADMIN_KEY,
    CHECKIN_KEY,
    NOW,
    OFFICE,
    OFFICE_ID,
    READER_KEY,
    SERVICE,
    SERVICE_ID,
    WEDNESDAY,
    WRITER_KEY,
    booking_body,
    make_settings,
    set_clock,
)

# One route of each kind, with a body that would be accepted by the right key.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/offices", None),
    ("GET", f"/v1/offices/{OFFICE_ID}", None),
    ("GET", "/v1/services", None),
    ("PUT", f"/v1/services/{SERVICE_ID}", {**SERVICE, "name": "changed"}),
    ("PUT", f"/v1/offices/{OFFICE_ID}", {**OFFICE, "name": "changed"}),
    ("PUT", f"/v1/calendar/{WEDNESDAY}", {"kind": "holiday", "name": "x"}),
    ("PUT", f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}", {"reason": "x"}),
    ("PATCH", f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/09:00", {"capacity": 9}),
    ("POST", "/v1/admin/jobs/open-horizon", None),
    ("PUT", "/v1/admin/clock", {"now": "2026-11-24T10:00:00+08:00"}),
    ("GET", f"/v1/offices/{OFFICE_ID}/availability?service={SERVICE_ID}", None),
    ("GET", f"/v1/services/{SERVICE_ID}/availability", None),
    ("POST", "/v1/bookings", booking_body()),
    ("GET", "/v1/bookings/ABCDEFGHJKLMNP", None),
    ("POST", "/v1/bookings/search", {"reference": "x"}),
    ("POST", "/v1/bookings/ABCDEFGHJKLMNP/cancel", {"by": "person"}),
    ("POST", "/v1/bookings/ABCDEFGHJKLMNP/check-in", None),
    ("GET", "/v1/events", None),
]

MALFORMED = [
    "",
    "Bearer",
    "Bearer ",
    "Bearer    ",
    ADMIN_KEY,
    f"Basic {ADMIN_KEY}",
    f"Token {ADMIN_KEY}",
    f"Bearer{ADMIN_KEY}",
    f"Bearer {ADMIN_KEY}x",
    f"Bearer {ADMIN_KEY[:-1]}",
]


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    authorization: str | None = None,
) -> httpx.Response:
    """A request with the given Authorization header, or none at all."""
    request = client.build_request(method, url, json=body)
    del request.headers["Authorization"]
    if authorization is not None:
        request.headers["Authorization"] = authorization
    return await client.send(request)


async def catalog_state(client: httpx.AsyncClient) -> tuple[Any, ...]:
    """Everything the admin routes above could have changed."""
    clock = await client.get("/v1/admin/clock")
    calendar = await client.get("/v1/calendar")
    offices = await client.get("/v1/offices")
    services = await client.get("/v1/services")
    return clock.json(), calendar.json(), offices.json(), services.json(), await seats(client)


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
async def test_no_key_is_401_and_changes_nothing(
    catalog: httpx.AsyncClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    before = await catalog_state(catalog)
    response = await send(catalog, method, url, body)
    problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert await catalog_state(catalog) == before


@pytest.mark.parametrize("authorization", MALFORMED)
async def test_unknown_or_malformed_key_is_401(
    catalog: httpx.AsyncClient, authorization: str
) -> None:
    before = await catalog_state(catalog)
    response = await send(
        catalog, "PUT", f"/v1/offices/{OFFICE_ID}", {**OFFICE, "name": "x"}, authorization
    )
    problem(response, 401, "unauthorized")
    reader = await send(catalog, "GET", "/v1/offices", None, authorization)
    problem(reader, 401, "unauthorized")
    assert await catalog_state(catalog) == before


async def test_the_scheme_is_case_insensitive(catalog: httpx.AsyncClient) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        response = await send(catalog, "GET", "/v1/offices", None, f"{scheme} {READER_KEY}")
        assert response.status_code == 200, response.text


async def test_the_key_is_checked_before_the_body(catalog: httpx.AsyncClient) -> None:
    """A caller without a key learns nothing about the body's validity."""
    invalid = {"name": "x", "unknown": 1}
    response = await send(catalog, "PUT", f"/v1/services/{SERVICE_ID}", invalid)
    problem(response, 401, "unauthorized")
    response = await send(
        catalog, "PUT", f"/v1/services/{SERVICE_ID}", invalid, f"Bearer {READER_KEY}"
    )
    problem(response, 403, "forbidden")
    garbage = catalog.build_request("POST", "/v1/bookings", content=b"{not json")
    garbage.headers.pop("Authorization", None)
    answer = await catalog.send(garbage)
    problem(answer, 401, "unauthorized")
    assert answer.headers["www-authenticate"].lower().startswith("bearer")
    garbage.headers["Authorization"] = f"Bearer {READER_KEY}"
    problem(await catalog.send(garbage), 403, "forbidden")


ADMIN_ONLY = [r for r in ROUTES if r[0] != "GET" and r[1].startswith(("/v1/services/", "/v1/o"))]
ADMIN_ONLY += [r for r in ROUTES if r[1].startswith(("/v1/calendar", "/v1/admin"))]


@pytest.mark.parametrize(("method", "url", "body"), ADMIN_ONLY)
async def test_reader_on_admin_routes_is_403(
    catalog: httpx.AsyncClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    before = await catalog_state(catalog)
    response = await send(catalog, method, url, body, f"Bearer {READER_KEY}")
    problem(response, 403, "forbidden")
    writer = await send(catalog, method, url, body, f"Bearer {WRITER_KEY}")
    problem(writer, 403, "forbidden")
    assert await catalog_state(catalog) == before


async def test_reader_cannot_write_bookings(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    before = await seats(catalog)
    response = await send(catalog, "POST", "/v1/bookings", booking_body(), f"Bearer {READER_KEY}")
    problem(response, 403, "forbidden")
    cancel = await send(
        catalog,
        "POST",
        f"/v1/bookings/{made['id']}/cancel",
        {"by": "person", "reason": "x"},
        f"Bearer {READER_KEY}",
    )
    problem(cancel, 403, "forbidden")
    assert await seats(catalog) == before
    assert (await catalog.get(f"/v1/bookings/{made['id']}")).json() == made


async def test_writer_cannot_read_bookings_or_the_catalog(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    writer = f"Bearer {WRITER_KEY}"
    problem(
        await send(catalog, "GET", f"/v1/bookings/{made['id']}", None, writer), 403, "forbidden"
    )
    search = {"reference": "x"}
    problem(await send(catalog, "POST", "/v1/bookings/search", search, writer), 403, "forbidden")
    problem(await send(catalog, "GET", "/v1/offices", None, writer), 403, "forbidden")
    availability = f"/v1/offices/{OFFICE_ID}/availability?service={SERVICE_ID}"
    problem(await send(catalog, "GET", availability, None, writer), 403, "forbidden")
    problem(await send(catalog, "GET", "/v1/events", None, writer), 403, "forbidden")


async def test_each_scope_opens_its_routes(catalog: httpx.AsyncClient) -> None:
    reader, writer, checkin = (f"Bearer {k}" for k in (READER_KEY, WRITER_KEY, CHECKIN_KEY))
    for url in ("/v1/offices", f"/v1/offices/{OFFICE_ID}", "/v1/services"):
        assert (await send(catalog, "GET", url, None, reader)).status_code == 200
    availability = f"/v1/offices/{OFFICE_ID}/availability?service={SERVICE_ID}"
    assert (await send(catalog, "GET", availability, None, reader)).status_code == 200
    created = await send(catalog, "POST", "/v1/bookings", booking_body(), writer)
    assert created.status_code == 201, created.text
    booking_id = created.json()["id"]
    got = await send(catalog, "GET", f"/v1/bookings/{booking_id}", None, reader)
    assert got.json() == created.json()
    check_in = f"/v1/bookings/{booking_id}/check-in"
    problem(await send(catalog, "POST", check_in, None, reader), 403, "forbidden")
    problem(await send(catalog, "POST", check_in, None, writer), 403, "forbidden")
    # the check-in key gets past the guard: too early is a rule, not a scope
    problem(await send(catalog, "POST", check_in, None, checkin), 409, "invalid_state")
    problem(await send(catalog, "GET", availability, None, checkin), 403, "forbidden")
    problem(await send(catalog, "GET", "/v1/events", None, reader), 403, "forbidden")


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic xyz"])
async def test_operations_routes_need_no_key(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    health = await send(client, "GET", "/healthz", None, authorization)
    assert health.status_code == 200
    ready = await send(client, "GET", "/readyz", None, authorization)
    assert ready.status_code == 200
    assert ready.json() == {"postgres": "ok", "redis": "ok"}
    metrics = await send(client, "GET", "/metrics", None, authorization)
    assert metrics.status_code == 200
    media_type = metrics.headers["content-type"]
    assert media_type.startswith("text/plain")
    assert media_type.lower().count("charset=") == 1, media_type  # Prometheus rejects duplicates
    assert "# TYPE " in metrics.text
    schema = await send(client, "GET", "/schema/openapi.json", None, authorization)
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")


async def test_a_key_over_its_rate_limit_is_429_and_other_keys_are_not(
    database_url: str, redis_url: str
) -> None:
    settings = make_settings(database_url, redis_url, rate_limit_per_key_per_minute=2)
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        await set_clock(c, NOW)
        assert (await c.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
        assert (await c.put(f"/v1/offices/{OFFICE_ID}", json=OFFICE)).status_code == 200
        answers = [await c.post("/v1/bookings", json=booking_body()) for _ in range(3)]
        assert [a.status_code for a in answers[:2]] == [201, 201], answers[1].text
        problem(answers[2], 429, "rate_limited")
        assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
        writer = {"Authorization": f"Bearer {WRITER_KEY}"}
        made = await c.post("/v1/bookings", json=booking_body(), headers=writer)
        assert made.status_code == 201, made.text
