"""A catalog write, once answered, is what every worker serves: `slots-service serve` with two
granian workers, each request on a fresh connection (so both workers answer)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NOW, OFFICE, SERVICE, SERVICE_ID, WEDNESDAY, booking_body
from tests.conftest import person as new_person
from tests.e2e import serving

FRESH = {"Connection": "close"}  # a connection each: both workers take some


@pytest.fixture
def base(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    served = serving.serve(database_url, redis_url, tmp_path / "serve.log")
    try:
        yield served.base
    finally:
        served.stop()
        assert served.errors() == ""


async def test_a_new_office_is_known_to_every_worker_at_once(base: str) -> None:
    async with serving.admin_client(base) as http:
        assert (await http.put("/v1/admin/clock", json={"now": NOW})).status_code == 200
        assert (await http.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
        for n in range(3):
            office_id = f"new-office-{n}"
            made = await http.put(f"/v1/offices/{office_id}", json=OFFICE, headers=FRESH)
            assert made.status_code == 200, made.text
            reads = await asyncio.gather(
                *(http.get(f"/v1/offices/{office_id}", headers=FRESH) for _ in range(64))
            )
            assert Counter(r.status_code for r in reads) == {200: 64}
            body = booking_body(new_person(), WEDNESDAY, "09:00") | {"office_id": office_id}
            booked = await http.post("/v1/bookings", json=body, headers=FRESH)
            assert booked.status_code == 201, booked.text


async def test_a_changed_rule_is_applied_by_every_worker_at_once(base: str) -> None:
    async with serving.admin_client(base) as http:
        assert (await http.put("/v1/admin/clock", json={"now": NOW})).status_code == 200
        assert (await http.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
        office = await http.put("/v1/offices/sz-exit-entry-foreigners", json=OFFICE)
        assert office.status_code == 200
        for limit in (1, 3, 2):
            changed = {**SERVICE, "max_party_size": limit}
            response = await http.put(f"/v1/services/{SERVICE_ID}", json=changed, headers=FRESH)
            assert response.status_code == 200, response.text
            reads = await asyncio.gather(
                *(http.get(f"/v1/services/{SERVICE_ID}", headers=FRESH) for _ in range(32))
            )
            assert {r.json()["max_party_size"] for r in reads} == {limit}
            too_big = await asyncio.gather(
                *(
                    http.post(
                        "/v1/bookings",
                        json=booking_body(new_person(), WEDNESDAY, "14:00", party_size=limit + 1),
                        headers=FRESH,
                    )
                    for _ in range(16)
                )
            )
            assert {r.json()["code"] for r in too_big} == {"not_bookable"}
