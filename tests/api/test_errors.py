"""Errors at the HTTP edge: every one is RFC 9457 problem+json; and the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from slots_service import errors, routes
from tests.api.steps import problem, seats
from tests.conftest import OFFICE, OFFICE_ID, SERVICE, SERVICE_ID, WEDNESDAY, booking_body

MALFORMED = [
    b"{not json",
    b'{"office_id": "sz-exit-entry-foreigners",',
    b'{"name": "x"} trailing',
    b"\xff\xfe\x00garbage",
    b"[",
    b"",
]


async def state(client: httpx.AsyncClient) -> tuple[Any, ...]:
    services = (await client.get("/v1/services")).json()
    offices = (await client.get("/v1/offices")).json()
    feed = (await client.get("/v1/events", params={"limit": 1000})).json()["items"]
    return services, offices, feed, await seats(client)


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/v1/bookings"),
        ("PUT", f"/v1/services/{SERVICE_ID}"),
        ("PUT", f"/v1/offices/{OFFICE_ID}"),
        ("PUT", f"/v1/calendar/{WEDNESDAY}"),
        ("PATCH", f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/09:00"),
    ],
)
async def test_malformed_json_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, method: str, url: str, body: bytes
) -> None:
    before = await state(catalog)
    response = await catalog.request(
        method, url, content=body, headers={"content-type": "application/json"}
    )
    problem(response, 400, "invalid_request")
    assert await state(catalog) == before


def booking_with(**changes: Any) -> dict[str, Any]:
    body = booking_body()
    body.update(changes)
    return body


def person_with(**changes: Any) -> dict[str, Any]:
    body = booking_body()
    body["person"] = {**body["person"], **changes}
    return body


WRONG_BOOKINGS: list[tuple[str, Any]] = [
    ("party_size as text", booking_with(party_size="2")),
    ("party_size as a fraction", booking_with(party_size=1.5)),
    ("party_size as bool", booking_with(party_size=True)),
    ("date as number", booking_with(date=20261125)),
    ("date with time", booking_with(date="2026-11-25T09:00:00")),
    ("date 2026-11-31", booking_with(date="2026-11-31")),
    ("start 9:00", booking_with(start="9:00")),
    ("start as number", booking_with(start=900)),
    ("person as text", booking_with(person="LEE JIWON")),
    ("person without phone", person_with(phone=None)),
    ("unknown id_type", person_with(id_type="driving_licence")),
    ("id_number too short", person_with(id_number="AB1")),
    ("id_number with dashes", person_with(id_number="M-9283-9408")),
    ("phone not E.164", person_with(phone="13926150414")),
    ("unknown channel", booking_with(channel="fax")),
    ("metadata not flat", booking_with(metadata={"delivery": {"kind": "post"}})),
    ("metadata number", booking_with(metadata={"copies": 2})),
    ("metadata too big", booking_with(metadata={f"k{i}": "v" for i in range(17)})),
    ("office_id uppercase", booking_with(office_id="SZ")),
    ("unknown field", booking_with(priority="high")),
    ("unknown person field", person_with(nationality="KR")),
    ("a list", [booking_body()]),
    ("null", None),
    ("a string", "booking"),
]


@pytest.mark.parametrize(("case", "body"), WRONG_BOOKINGS, ids=[c for c, _ in WRONG_BOOKINGS])
async def test_wrong_booking_body_is_400_and_books_nothing(
    catalog: httpx.AsyncClient, case: str, body: Any
) -> None:
    before = await state(catalog)
    problem(await catalog.post("/v1/bookings", json=body), 400, "invalid_request")
    assert await state(catalog) == before


async def test_valid_booking_body_passes(catalog: httpx.AsyncClient) -> None:
    """The baseline of the table above: the same body, unchanged, books."""
    body = booking_with(party_size=2, channel="phone", metadata={"delivery": "post"})
    response = await catalog.post("/v1/bookings", json=body)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "url",
    [
        "/v1/nope",
        "/v2/offices",
        "/",
        "/v1",
        f"/v1/offices/{OFFICE_ID}/nope",
        f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}",
        "/v1/bookings/ABC/nope",
    ],
)
async def test_unknown_route_is_404_problem(catalog: httpx.AsyncClient, url: str) -> None:
    problem(await catalog.get(url), 404, "not_found")
    problem(await catalog.post(url, json={}), 404, "not_found")


async def test_unknown_route_is_404_without_a_key_too(catalog: httpx.AsyncClient) -> None:
    request = catalog.build_request("GET", "/v1/nope")
    del request.headers["Authorization"]
    problem(await catalog.send(request), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("DELETE", "/v1/offices", {"GET"}),
        ("POST", f"/v1/offices/{OFFICE_ID}", {"GET", "PUT"}),
        ("DELETE", f"/v1/services/{SERVICE_ID}", {"GET", "PUT"}),
        ("GET", "/v1/bookings", {"POST"}),
        ("PUT", "/v1/bookings/ABCDEFGHJKLMNP", {"GET"}),
        ("GET", "/v1/bookings/ABCDEFGHJKLMNP/cancel", {"POST"}),
        ("POST", "/v1/events", {"GET"}),
        ("POST", f"/v1/calendar/{WEDNESDAY}", {"PUT", "DELETE"}),
        ("GET", "/v1/admin/jobs/purge", {"POST"}),
        ("POST", "/healthz", {"GET"}),
    ],
)
async def test_wrong_method_is_405_problem(
    catalog: httpx.AsyncClient, method: str, url: str, allowed: set[str]
) -> None:
    before = await state(catalog)
    response = await catalog.request(method, url)
    problem(response, 405, "method_not_allowed")
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed <= listed
    assert method not in listed
    assert await state(catalog) == before


async def test_body_too_large_is_413_problem(catalog: httpx.AsyncClient) -> None:
    before = await state(catalog)
    huge = booking_with(reference="x" * 40, metadata={"note": "x" * 500})
    huge["padding"] = "x" * (1 << 20)
    response = await catalog.post("/v1/bookings", json=huge)
    problem(response, 413, "request_too_large")
    office = {**OFFICE, "name": "x" * (1 << 20)}
    problem(await catalog.put(f"/v1/offices/{OFFICE_ID}", json=office), 413, "request_too_large")
    assert await state(catalog) == before


async def test_a_body_just_under_the_limit_is_read(catalog: httpx.AsyncClient) -> None:
    """60 KiB of JSON is read (and refused for what it says, not for its size)."""
    body = {**SERVICE, "name": "x" * (60 * 1024)}
    problem(await catalog.put(f"/v1/services/{SERVICE_ID}", json=body), 400, "invalid_request")


async def test_problem_titles_are_stable_per_type(catalog: httpx.AsyncClient) -> None:
    """RFC 9457: one `type` (and `code`) has one `title`, whoever raised it."""
    bad = [
        await catalog.post(
            "/v1/bookings", content=b"{", headers={"content-type": "application/json"}
        ),
        await catalog.post("/v1/bookings", json=booking_with(priority="high")),
        await catalog.put("/v1/services/Bad", json=SERVICE),
        await catalog.get(f"/v1/offices/{OFFICE_ID}/availability"),
    ]
    missing = [
        await catalog.get("/v1/nope"),
        await catalog.get("/v1/offices/no-such-office"),
        await catalog.get("/v1/bookings/ABCDEFGHJKLMNP"),
    ]
    for responses, status, code in ((bad, 400, "invalid_request"), (missing, 404, "not_found")):
        bodies = [problem(r, status, code) for r in responses]
        assert len({(b["type"], b["title"]) for b in bodies}) == 1, bodies
        assert not any(b["title"].endswith("Exception") for b in bodies), bodies


# ---------------------------------------------------------------- the OpenAPI document

OPEN = {"/healthz", "/readyz", "/metrics"}


def template(path: str) -> str:
    """`/v1/offices/{office_id:str}` -> `/v1/offices/{office_id}`."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def routed() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for handler in routes.handlers:
        for path in handler.paths:
            found.setdefault(template(path), set()).update(handler.http_methods)
    return found


async def test_openapi_lists_every_route(client: httpx.AsyncClient) -> None:
    request = client.build_request("GET", "/schema/openapi.json")
    del request.headers["Authorization"]
    response = await client.send(request)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    paths: dict[str, dict[str, Any]] = doc["paths"]
    expected = routed()
    assert set(paths) == set(expected) | OPEN
    for path, methods in expected.items():
        assert {m.upper() for m in paths[path]} == methods, path
    # every documented operation can be told apart
    operation_ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


async def test_openapi_covers_the_contract_paths(client: httpx.AsyncClient) -> None:
    """The paths API.md fixes, by method."""
    contract = {
        ("PUT", "/v1/services/{service_id}"),
        ("GET", "/v1/services/{service_id}"),
        ("GET", "/v1/services"),
        ("PUT", "/v1/offices/{office_id}"),
        ("GET", "/v1/offices/{office_id}"),
        ("GET", "/v1/offices"),
        ("PUT", "/v1/calendar/{day}"),
        ("DELETE", "/v1/calendar/{day}"),
        ("PUT", "/v1/offices/{office_id}/closures/{day}"),
        ("DELETE", "/v1/offices/{office_id}/closures/{day}"),
        ("PATCH", "/v1/offices/{office_id}/windows/{day}/{start}"),
        ("POST", "/v1/admin/jobs/{job}"),
        ("POST", "/v1/people/unblock"),
        ("GET", "/v1/offices/{office_id}/availability"),
        ("GET", "/v1/services/{service_id}/availability"),
        ("POST", "/v1/bookings"),
        ("GET", "/v1/bookings/{booking_id}"),
        ("POST", "/v1/bookings/search"),
        ("POST", "/v1/bookings/{booking_id}/cancel"),
        ("POST", "/v1/bookings/{booking_id}/reschedule"),
        ("POST", "/v1/bookings/{booking_id}/check-in"),
        ("POST", "/v1/people/standing"),
        ("GET", "/v1/events"),
        # 1.1
        ("POST", "/v1/entries"),
        ("GET", "/v1/entries/{entry_id}"),
        ("POST", "/v1/entries/{entry_id}/withdraw"),
        ("GET", "/v1/offices/{office_id}/releases/{day}"),
        ("GET", "/v1/offices/{office_id}/releases/{day}/draw"),
        ("POST", "/v1/waitlist"),
        ("GET", "/v1/waitlist/{waitlist_id}"),
        ("POST", "/v1/waitlist/{waitlist_id}/cancel"),
        ("PUT", "/v1/admin/clock"),
        ("DELETE", "/v1/admin/clock"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    documented = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert contract <= documented, contract - documented


# Every `code` of the contract's error table that its routes answer today (1 and 1.1 so far).
CONTRACT_CODES = {
    "invalid_request", "unauthorized", "forbidden", "person_blocked", "not_found", "slot_full",
    "active_booking_exists", "daily_limit_reached", "phone_bound_to_other_person",
    "cancel_cutoff_passed", "invalid_state", "idempotency_in_progress", "idempotency_key_reused",
    "not_bookable", "rate_limited", "unavailable",
    # 1.1
    "reschedule_limit_reached", "rebook_cooldown", "entry_exists", "entries_closed",
    "draw_pending", "waitlist_entry_exists",
}  # fmt: skip


async def test_every_route_documents_the_codes_it_answers(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    documented: set[str] = set()
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            problems = {s: r for s, r in op["responses"].items() if s.startswith(("4", "5"))}
            assert {"400", "401", "403", "503"} <= set(problems), (method, path)
            for status, answer in problems.items():
                assert "application/problem+json" in answer["content"], (method, path, status)
                codes = set(answer["description"].split(", "))
                documented |= codes
                assert all(errors.BY_CODE[c].code == c for c in codes), (method, path, codes)
    assert documented == CONTRACT_CODES
    booking_codes = {
        c for r in paths["/v1/bookings"]["post"]["responses"].values()
        for c in r["description"].split(", ")
    }  # fmt: skip
    assert {"slot_full", "rate_limited", "idempotency_key_reused", "not_bookable"} <= booking_codes
