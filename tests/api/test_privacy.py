"""Identity numbers are stored only as an HMAC and a masked form; names, phones and identity
numbers never reach the logs."""

import logging

import asyncpg
import httpx
import pytest

from tests.conftest import booking_body

ID_NUMBER = "M92839408"
NAME = "LEE JIWON"
PHONE = "+8613926150414"
WHO = {"id_type": "passport", "id_number": ID_NUMBER, "name": NAME, "phone": PHONE}
TABLES = ["people", "bookings", "events", "idempotency_keys"]


async def test_no_identity_number_or_phone_at_rest_and_nothing_in_logs(
    catalog: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await catalog.post(
        "/v1/bookings", json=booking_body(WHO), headers={"Idempotency-Key": "privacy-1"}
    )
    assert created.status_code == 201
    assert created.json()["person"]["id_number_masked"] == "M9****408"
    again = await catalog.post("/v1/bookings", json=booking_body(WHO))
    assert again.json()["code"] == "active_booking_exists"
    bad = await catalog.post("/v1/bookings", json=booking_body({**WHO, "phone": "nope"}))
    assert bad.status_code == 400
    search = await catalog.post(
        "/v1/bookings/search", json={"id_type": "passport", "id_number": ID_NUMBER}
    )
    assert [b["id"] for b in search.json()["items"]] == [created.json()["id"]]
    cancel = f"/v1/bookings/{created.json()['id']}/cancel"
    assert (await catalog.post(cancel, json={"by": "person"})).status_code == 200

    conn = await asyncpg.connect(database_url)
    try:
        for table in TABLES:
            for secret in (ID_NUMBER, PHONE, PHONE.removeprefix("+")):
                leaks = await conn.fetchval(
                    f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'",
                    secret,
                )
                assert leaks == 0, f"{secret} stored in {table}"
    finally:
        await conn.close()
    logged = caplog.text
    assert logged  # the service did log (jobs, requests), just not these
    for secret in (ID_NUMBER, NAME, PHONE):
        assert secret not in logged
