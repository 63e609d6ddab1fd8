"""The gate works whatever the service clock says: a test clock a year away from the real
date (the one Redis expires keys by) still books through Redis, never Postgres alone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from slots_service.counters import day_key
from tests.api.steps import book, run_job
from tests.conftest import OFFICE, OFFICE_ID, SERVICE, SERVICE_ID, person, set_clock

_GATE = re.compile(r'^slots_redis_gate_total\{result="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)


async def gate_answers(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    return {result: float(value) for result, value in _GATE.findall(text)}


@pytest.mark.parametrize("offset_days", [-366, 366, -3650])
async def test_a_test_clock_far_from_real_time_still_books_through_the_gate(
    client: httpx.AsyncClient, redis_url: str, offset_days: int
) -> None:
    real_now = datetime.now(UTC)
    await set_clock(client, (real_now + timedelta(days=offset_days)).isoformat())
    assert (await client.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
    assert (await client.put(f"/v1/offices/{OFFICE_ID}", json=OFFICE)).status_code == 200
    await run_job(client, "open-horizon")
    response = await client.get(
        f"/v1/offices/{OFFICE_ID}/availability",
        params={"service": SERVICE_ID, "available_only": "true"},
    )
    assert response.status_code == 200, response.text
    day = response.json()["days"][0]
    date, start = day["date"], day["windows"][0]["start"]
    before = await gate_answers(client)

    await book(client, person(), date, start)

    after = await gate_answers(client)
    assert after.get("taken", 0) == before.get("taken", 0) + 1, (before, after)
    assert after.get("missing", 0) == before.get("missing", 0), (before, after)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        key = day_key(OFFICE_ID, datetime.fromisoformat(date).date())
        ttl = await redis.ttl(key)
        assert ttl > 24 * 3600, ttl  # alive for the day and after, by Redis's own clock
        assert int(await redis.hget(key, start) or -1) == day["windows"][0]["remaining"] - 1
    finally:
        await redis.aclose()
