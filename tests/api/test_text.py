"""Text rules of the API conventions: every string field refuses NUL, other control characters
(tab and newline allowed) and unpaired surrogates, and over-long values, with 400
`invalid_request`, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.steps import book, bookings_of, events, get, problem
from tests.conftest import OFFICE, OFFICE_ID, SERVICE, SERVICE_ID, WEDNESDAY, booking_body, person

# JSON text of a string value, written by hand so the escapes reach the service as sent.
BAD_TEXT = {
    "nul": r'"a\u0000b"',
    "bell": r'"a\u0007b"',
    "escape": r'"a\u001bb"',
    "carriage return": r'"a\rb"',
    "delete": r'"a\u007fb"',
    "c1 control": r'"a\u0085b"',
    "unpaired high surrogate": r'"a\ud800b"',
    "unpaired low surrogate": r'"a\udc00b"',
}


def _raw(template: dict[str, Any], where: list[str], value_json: str) -> bytes:
    """The JSON of `template` with the string at path `where` replaced by raw JSON text."""
    marker = "__VALUE__"
    body = json.loads(json.dumps(template))
    node = body
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = marker
    return json.dumps(body, ensure_ascii=False).replace(f'"{marker}"', value_json).encode()


async def _post(client: httpx.AsyncClient, method: str, url: str, body: bytes) -> httpx.Response:
    return await client.request(
        method, url, content=body, headers={"Content-Type": "application/json"}
    )


@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
async def test_a_service_name_with_a_control_character_is_refused_and_not_stored(
    catalog: httpx.AsyncClient, kind: str
) -> None:
    body = _raw(SERVICE, ["name"], BAD_TEXT[kind])
    response = await _post(catalog, "PUT", f"/v1/services/{SERVICE_ID}", body)
    problem(response, 400, "invalid_request")
    stored = (await catalog.get(f"/v1/services/{SERVICE_ID}")).json()
    assert stored["name"] == SERVICE["name"]


@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
@pytest.mark.parametrize(
    "where",
    [["person", "name"], ["reference"], ["metadata", "delivery"]],
    ids=["person.name", "reference", "metadata value"],
)
async def test_a_booking_with_a_control_character_books_nothing(
    catalog: httpx.AsyncClient, kind: str, where: list[str]
) -> None:
    who = person()
    template = booking_body(who, reference="44030020110500002", metadata={"delivery": "post"})
    response = await _post(catalog, "POST", "/v1/bookings", _raw(template, where, BAD_TEXT[kind]))
    problem(response, 400, "invalid_request")
    assert await bookings_of(catalog, who) == []


async def test_a_metadata_key_with_a_control_character_books_nothing(
    catalog: httpx.AsyncClient,
) -> None:
    who = person()
    body = booking_body(who)
    raw = httpx.Request("POST", "/", json=body).content.decode()
    raw = raw[:-1] + r', "metadata": {"a\u0000": "x"}}'
    response = await _post(catalog, "POST", "/v1/bookings", raw.encode())
    problem(response, 400, "invalid_request")
    assert await bookings_of(catalog, who) == []


@pytest.mark.parametrize(
    ("method", "url", "template", "where"),
    [
        ("PUT", f"/v1/offices/{OFFICE_ID}", OFFICE, ["name"]),
        ("PUT", "/v1/calendar/2026-12-25", {"kind": "holiday", "name": "x"}, ["name"]),
        ("PUT", f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}", {"reason": "x"}, ["reason"]),
    ],
    ids=["office name", "calendar name", "closure reason"],
)
async def test_admin_text_with_nul_is_refused(
    catalog: httpx.AsyncClient,
    method: str,
    url: str,
    template: dict[str, Any],
    where: list[str],
) -> None:
    before = (await catalog.get("/v1/calendar")).json()
    problem(
        await _post(catalog, method, url, _raw(template, where, BAD_TEXT["nul"])),
        400,
        "invalid_request",
    )
    assert (await catalog.get("/v1/calendar")).json() == before
    assert (await catalog.get(f"/v1/offices/{OFFICE_ID}")).json()["name"] == OFFICE["name"]


async def test_a_cancel_reason_with_nul_leaves_the_booking_booked(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    raw = _raw({"by": "office", "reason": "x"}, ["reason"], BAD_TEXT["nul"])
    response = await _post(catalog, "POST", f"/v1/bookings/{made['id']}/cancel", raw)
    problem(response, 400, "invalid_request")
    assert (await get(catalog, made["id"]))["status"] == "booked"
    found, _ = await events(catalog)
    assert [e["type"] for e in found] == ["booking.created"]


async def test_tab_and_newline_are_text_a_person_can_type(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    reason = "moved house\n\tnew address follows"
    response = await catalog.post(
        f"/v1/bookings/{made['id']}/cancel", json={"by": "office", "reason": reason}
    )
    assert response.status_code == 200, response.text
    assert response.json()["cancel_reason"] == reason


@pytest.mark.parametrize(
    ("where", "limit"),
    [(["person", "name"], 200), (["reference"], 64), (["metadata", "delivery"], 500)],
    ids=["person.name", "reference", "metadata value"],
)
async def test_text_lengths_are_limited(
    catalog: httpx.AsyncClient, where: list[str], limit: int
) -> None:
    who = person()
    template = booking_body(who, reference="r", metadata={"delivery": "post"})
    too_long = _raw(template, where, '"' + "字" * (limit + 1) + '"')
    problem(await _post(catalog, "POST", "/v1/bookings", too_long), 400, "invalid_request")
    assert await bookings_of(catalog, who) == []
    at_limit = _raw(template, where, '"' + "字" * limit + '"')
    response = await _post(catalog, "POST", "/v1/bookings", at_limit)
    assert response.status_code == 201, response.text


async def test_a_booking_id_with_nul_in_the_path_is_a_bad_request(
    catalog: httpx.AsyncClient,
) -> None:
    problem(await catalog.get("/v1/bookings/ABC%00DEF123456"), 400, "invalid_request")


async def test_a_whole_number_written_as_a_float_is_an_integer(
    catalog: httpx.AsyncClient,
) -> None:
    """JSON Schema (and so the OpenAPI document) counts 2.0 as an integer; "2" stays a
    wrong type."""
    body = booking_body(person(), party_size=2.0)
    response = await catalog.post("/v1/bookings", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["party_size"] == 2
    problem(
        await catalog.post("/v1/bookings", json=booking_body(person(), party_size="2")),
        400,
        "invalid_request",
    )
    problem(
        await catalog.post("/v1/bookings", json=booking_body(person(), party_size=1.5)),
        400,
        "invalid_request",
    )


@pytest.mark.parametrize("raw", [b"2\xc3\x05", b"5L\x02;", b"11K:", b"[1, 2"])
async def test_a_body_that_is_not_json_is_a_bad_request(
    catalog: httpx.AsyncClient, raw: bytes
) -> None:
    made = await book(catalog)
    response = await _post(catalog, "POST", f"/v1/bookings/{made['id']}/cancel", raw)
    problem(response, 400, "invalid_request")
    assert (await get(catalog, made["id"]))["status"] == "booked"


@pytest.mark.parametrize("instant", ["9999-12-31T23:00:00+00:00", "0001-01-01T00:00:00+08:00"])
async def test_a_test_clock_off_the_calendar_is_a_bad_request(
    catalog: httpx.AsyncClient, instant: str
) -> None:
    problem(await catalog.put("/v1/admin/clock", json={"now": instant}), 400, "invalid_request")
    assert (await catalog.get("/v1/admin/clock")).json()["now"].startswith("2026-11-23T10:00")
