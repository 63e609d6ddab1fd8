"""API 1.1 business notice: `notice`, `documents` and `notice_required` on a service; a booking
of a service that requires it carries `notice_accepted: true`, else 422 `not_bookable` with
nothing taken."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.steps import book, problem, search
from tests.api.test_bookings import BOOKING_FIELDS, assert_refused
from tests.conftest import SERVICE, SERVICE_ID, booking_body, person

NOTICE = (
    "请携带护照原件及复印件、近期正面免冠彩色照片。\n"
    "Bring your passport, a copy of its photo page and a recent colour photo."
)
DOCUMENTS = ["护照原件 Passport", "照片 Photo (33 x 48 mm)", "工作许可 Work permit"]
WITH_NOTICE: dict[str, Any] = {
    **SERVICE,
    "notice": NOTICE,
    "documents": DOCUMENTS,
    "notice_required": True,
}


async def put_service(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"/v1/services/{SERVICE_ID}", json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_the_notice_round_trips(catalog: httpx.AsyncClient) -> None:
    stored = await put_service(catalog, WITH_NOTICE)
    assert stored == {"id": SERVICE_ID, **WITH_NOTICE}
    assert (await catalog.get(f"/v1/services/{SERVICE_ID}")).json() == stored
    assert (await catalog.get("/v1/services")).json() == [stored]


async def test_a_service_without_a_notice_says_so(catalog: httpx.AsyncClient) -> None:
    found = (await catalog.get(f"/v1/services/{SERVICE_ID}")).json()
    assert (found["notice"], found["documents"], found["notice_required"]) == (None, [], False)
    await put_service(catalog, WITH_NOTICE)
    # PUT replaces the service whole: a notice left out is gone.
    again = await put_service(catalog, SERVICE)
    assert (again["notice"], again["documents"], again["notice_required"]) == (None, [], False)


async def test_the_longest_notice_and_document_list_are_accepted(
    catalog: httpx.AsyncClient,
) -> None:
    body = {**SERVICE, "notice": "须" * 4000, "documents": ["证" * 200] * 20}
    stored = await put_service(catalog, body)
    assert stored["notice"] == body["notice"]
    assert stored["documents"] == body["documents"]


BAD: list[tuple[str, dict[str, Any]]] = [
    ("notice too long", {**SERVICE, "notice": "x" * 4001}),
    ("empty notice", {**SERVICE, "notice": ""}),
    ("notice with a control character", {**SERVICE, "notice": "bring\x07this"}),
    ("notice not text", {**SERVICE, "notice": 7}),
    ("21 documents", {**SERVICE, "documents": ["passport"] * 21}),
    ("a document too long", {**SERVICE, "documents": ["x" * 201]}),
    ("an empty document", {**SERVICE, "documents": [""]}),
    ("documents not a list", {**SERVICE, "documents": "passport"}),
    ("required as text", {**SERVICE, "notice": NOTICE, "notice_required": "yes"}),
    ("required without a notice", {**SERVICE, "notice_required": True}),
]


@pytest.mark.parametrize(("case", "body"), BAD, ids=[c for c, _ in BAD])
async def test_an_invalid_notice_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, case: str, body: dict[str, Any]
) -> None:
    before = (await catalog.get(f"/v1/services/{SERVICE_ID}")).json()
    problem(await catalog.put(f"/v1/services/{SERVICE_ID}", json=body), 400, "invalid_request")
    assert (await catalog.get(f"/v1/services/{SERVICE_ID}")).json() == before


async def test_a_required_notice_must_be_accepted(catalog: httpx.AsyncClient) -> None:
    await put_service(catalog, WITH_NOTICE)
    body = await assert_refused(catalog, booking_body(person()), 422, "not_bookable")
    assert "notice_accepted" in body["detail"]
    await assert_refused(
        catalog, booking_body(person(), notice_accepted=False), 422, "not_bookable"
    )
    made = await book(catalog, notice_accepted=True)
    assert set(made) == BOOKING_FIELDS


async def test_a_notice_not_required_may_be_accepted_or_not(catalog: httpx.AsyncClient) -> None:
    await put_service(catalog, {**WITH_NOTICE, "notice_required": False})
    await book(catalog)
    await book(catalog, notice_accepted=True)
    await book(catalog, notice_accepted=False)


async def test_notice_accepted_must_be_a_boolean(catalog: httpx.AsyncClient) -> None:
    await put_service(catalog, WITH_NOTICE)
    await assert_refused(
        catalog, booking_body(person(), notice_accepted="yes"), 400, "invalid_request"
    )


async def test_a_retry_with_the_notice_accepted_replays_the_booking(
    catalog: httpx.AsyncClient,
) -> None:
    await put_service(catalog, WITH_NOTICE)
    body = booking_body(person(), notice_accepted=True)
    headers = {"Idempotency-Key": "notice-1"}
    first = await catalog.post("/v1/bookings", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await catalog.post("/v1/bookings", json=body, headers=headers)
    assert (again.status_code, again.json()) == (201, first.json())
    assert [b["id"] for b in await search(catalog, **who_of(body))] == [first.json()["id"]]


def who_of(body: dict[str, Any]) -> dict[str, str]:
    return {"id_type": body["person"]["id_type"], "id_number": body["person"]["id_number"]}


async def test_the_openapi_document_describes_the_notice(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    service_in = schemas["ServiceIn"]["properties"]
    assert service_in["notice"]["maxLength"] == 4000
    assert service_in["documents"]["maxItems"] == 20
    assert service_in["documents"]["items"]["maxLength"] == 200
    assert service_in["notice_required"]["type"] == "boolean"
    assert {"notice", "documents", "notice_required"} <= set(schemas["ServiceOut"]["properties"])
    assert schemas["BookingIn"]["properties"]["notice_accepted"]["type"] == "boolean"
    assert "notice_accepted" not in schemas["BookingIn"].get("required", [])
