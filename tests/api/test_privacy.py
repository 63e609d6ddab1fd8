"""Identity numbers are stored only as an HMAC and a masked form; names, phones and identity
numbers never reach the logs."""

import json
import logging

import asyncpg
import httpx
import pytest

from slots_service.logs import access, json_formatter
from tests.conftest import booking_body

ID_NUMBER = "M92839408"
NAME = "LEE JIWON"
PHONE = "+8613926150414"
WHO = {"id_type": "passport", "id_number": ID_NUMBER, "name": NAME, "phone": PHONE}
TABLES = ["people", "bookings", "events", "idempotency_keys"]


async def test_no_identity_number_or_phone_at_rest_and_nothing_in_logs(
    catalog: httpx.AsyncClient,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    # The request lines reach caplog whatever an earlier `configure` did to their logger.
    monkeypatch.setattr(access, "propagate", True)
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
    # Every line as the service writes it in JSON, extras included (the request lines' fields).
    as_json = json_formatter()
    lines = [as_json.format(r) for r in caplog.records]
    logged = caplog.text + "\n".join(lines)
    assert logged  # the service did log (jobs, requests), just not these
    requests = [json.loads(line) for line in lines if '"slots_service.access"' in line]
    assert len(requests) >= 5  # one line per request, the ones above among them
    booked = [r for r in requests if r["route"] == "/v1/bookings" and r["status"] == 201]
    assert [r["booking_id"] for r in booked] == [created.json()["id"]]
    assert created.headers["x-request-id"] in {r["request_id"] for r in requests}
    for secret in (ID_NUMBER, NAME, PHONE):
        assert secret not in logged
