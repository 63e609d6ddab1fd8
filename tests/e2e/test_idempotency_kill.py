"""A real SIGKILL of a real `slots-service serve` in the middle of a crowd of keyed bookings,
then every client retries its same request with its same Idempotency-Key: each person ends
with exactly one booking, and every committed booking's stored answer is replayed.

The kill is staged so that all three fates of a request happen every run: answered before the
kill; committed by Postgres after its process died (never answered); and claimed but never
committed (its backend gone too, or its batch never sent), whose key the retry takes over once
the lease has lapsed. Twice: each booking its own transaction (batches of one), and with group
commit as deployed, where a batch commits or dies whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import (
    OFFICE,
    OFFICE_ID,
    WEDNESDAY,
    booking_body,
    person,
)
from tests.e2e import serving

LEASE_S = 2
CROWD = 40
BEFORE_KILL = 12  # answered before the kill
# A roomy window: seats the gate took for requests that died stay taken in Redis until the
# reconcile job, and must not make the retries' gate say full.
ROOMY = {
    **OFFICE,
    "hours": {
        day: [{"start": "09:00", "end": "10:00", "capacity": 100}]
        for day in ("mon", "tue", "wed", "thu", "fri")
    },
}


# Group commit off (every booking its own statement and backend), or as deployed.
ALONE = {"SLOTS_BOOK_BATCH_MAX": "1", "SLOTS_BOOK_BATCH_IN_FLIGHT": "30"}
BATCHED: dict[str, str] = {}


@pytest.fixture(params=["alone", "batched"])
def batching(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(database_url: str, redis_url: str, tmp_path: Path, batching: str) -> Iterator[Any]:
    """Start `slots-service serve` (two granian workers, its own process group) on demand;
    whatever is still running at the end is killed."""
    started: list[serving.Served] = []

    def start() -> serving.Served:
        served = serving.serve(
            database_url,
            redis_url,
            tmp_path / "serve.log",
            # every request of the crowd holds a connection at once
            SLOTS_DB_POOL_SIZE="30",
            SLOTS_IDEMPOTENCY_LEASE_SECONDS=str(LEASE_S),
            **(ALONE if batching == "alone" else BATCHED),
        )
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            served.kill()


async def post(http: httpx.AsyncClient, body: dict[str, Any], key: str) -> httpx.Response:
    return await http.post("/v1/bookings", json=body, headers={"Idempotency-Key": key})


async def eventually(check: Any, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def retry_until_answered(
    http: httpx.AsyncClient, body: dict[str, Any], key: str, deadline: float
) -> httpx.Response:
    """What a well-behaved client does: the same request, same key, after each Retry-After."""
    while True:
        answer = await post(http, body, key)
        if answer.status_code != 409 or answer.json()["code"] != "idempotency_in_progress":
            return answer
        assert 1 <= int(answer.headers["Retry-After"]) <= LEASE_S
        assert time.monotonic() < deadline, "still in progress after the lease"
        await asyncio.sleep(min(float(answer.headers["Retry-After"]), 0.5))


async def test_bookings_retried_after_a_sigkill_end_with_one_booking_each(
    serve: Any, database_url: str, batching: str
) -> None:
    bodies = [booking_body(person(), WEDNESDAY, "09:00") for _ in range(CROWD)]
    keys = [f"kill-{i}" for i in range(CROWD)]
    api = serve()
    base = api.base
    db = await asyncpg.connect(database_url)
    try:
        async with serving.admin_client(base) as http:
            await serving.put_catalog(http, ROOMY)
            first = await asyncio.gather(
                *(post(http, bodies[i], keys[i]) for i in range(BEFORE_KILL))
            )
            assert [r.status_code for r in first] == [201] * BEFORE_KILL, [r.text for r in first]

            # The rest of the crowd claims its keys and queues on the window's row, held here.
            holder = await asyncpg.connect(database_url)
            try:
                lock = holder.transaction()
                await lock.start()
                await holder.execute(
                    "SELECT FROM windows WHERE office_id = $1 AND day = $2 FOR UPDATE",
                    OFFICE_ID,
                    date.fromisoformat(WEDNESDAY),
                )
                crowd = [
                    asyncio.create_task(post(http, bodies[i], keys[i]))
                    for i in range(BEFORE_KILL, CROWD)
                ]

                async def queued() -> bool:
                    waiting = await db.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    if batching == "alone":  # every request's statement waits on its own
                        return bool(waiting == CROWD - BEFORE_KILL)
                    # every request claimed its key; batches (two or more) wait on the row
                    claimed = await db.fetchval(
                        "SELECT count(*) FROM idempotency_keys WHERE outcome IS NULL"
                    )
                    return bool(claimed == CROWD - BEFORE_KILL and waiting >= 2)

                await eventually(queued, "the crowd to queue on the window")
                api.kill()  # SIGKILL the API's whole process group
                lost = await asyncio.gather(*crowd, return_exceptions=True)
                assert all(isinstance(r, httpx.TransportError) for r in lost), lost
                # Half the dead requests' statements (or batches) die too; the other half
                # commit unanswered.
                waiting = await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                await db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ("
                    " SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    " ORDER BY pid LIMIT $1)",
                    waiting // 2,
                )
                await lock.commit()
            finally:
                await holder.close()

        async def settled() -> bool:
            busy = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND pid <> pg_backend_pid()"
            )
            return bool(busy == 0)

        await eventually(settled, "the dead requests' statements to end")
        unanswered = await db.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE outcome IS NULL"
        )
        committed = await db.fetchval("SELECT count(*) FROM bookings")
        # Both fates happened: claims left without an answer, and bookings nobody was told of.
        if batching == "alone":
            assert unanswered == (CROWD - BEFORE_KILL) // 2
        assert 0 < unanswered < CROWD - BEFORE_KILL
        assert committed == CROWD - unanswered

        base = serve().base  # the same database and Redis
        async with serving.admin_client(base) as http:
            deadline = time.monotonic() + LEASE_S + 10
            retries = await asyncio.gather(
                *(retry_until_answered(http, bodies[i], keys[i], deadline) for i in range(CROWD))
            )
        assert [r.status_code for r in retries] == [201] * CROWD, [r.text for r in retries]
        for before, replay in zip(first, retries, strict=False):
            assert replay.content == before.content
        rows = await db.fetch(
            "SELECT name, count(*) AS n, min(id) AS id FROM bookings GROUP BY name"
        )
        in_postgres = {r["name"]: r["id"] for r in rows}
        assert all(r["n"] == 1 for r in rows), [dict(r) for r in rows if r["n"] != 1]
        assert in_postgres == {
            body["person"]["name"]: r.json()["id"] for body, r in zip(bodies, retries, strict=True)
        }
        assert (
            await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE outcome = 'booked'")
            == CROWD
        )
    finally:
        await db.close()
