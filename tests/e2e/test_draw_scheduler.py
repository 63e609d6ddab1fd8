"""The draw at the opening instant, run by real processes: `slots-service serve` (2 workers) and
two `slots-service scheduler` replicas with the test clock. When the clock crosses the opening
instant, the leader draws within 5 seconds (API 1.1), exactly once, while an admin call races
it; the day is `draw_pending` until then."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slots_service.devservers import free_port
from tests.api.test_lottery import DAY, DRAW_AT, ENTRIES_OPEN, LOTTERY, entry_body
from tests.conftest import OFFICE_ID, booking_body
from tests.e2e import serving

DRAW_WITHIN_S = 5.0  # the contract's bound for the scheduler


def scheduler(database_url: str, redis_url: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = serving.environment(database_url, redis_url, SLOTS_METRICS_PORT=str(port))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slots_service", "scheduler"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    return proc, port


def leading(port: int) -> bool:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.TransportError:
        return False
    return "slots_scheduler_leader 1.0" in text


@pytest.fixture
def deployment(
    database_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[serving.Served, list[subprocess.Popen[bytes]]]]:
    served = serving.serve(database_url, redis_url, tmp_path / "serve.log")
    schedulers = [
        scheduler(database_url, redis_url, tmp_path / f"scheduler{k}.log") for k in (1, 2)
    ]
    try:
        deadline = time.monotonic() + 60
        while not any(leading(port) for _, port in schedulers):
            assert time.monotonic() < deadline, "no scheduler became the leader"
            time.sleep(0.2)
        yield served, [proc for proc, _ in schedulers]
    finally:
        for proc, _ in schedulers:
            proc.terminate()
            proc.wait(20)
        served.stop()
        assert served.errors() == ""
        for k in (1, 2):
            text = (tmp_path / f"scheduler{k}.log").read_text(errors="replace")
            assert " ERROR " not in text, text


async def test_the_leader_draws_once_within_5_s_of_the_opening_instant(
    deployment: tuple[serving.Served, list[subprocess.Popen[bytes]]],
) -> None:
    served, _ = deployment
    async with serving.admin_client(served.base) as http:
        await serving.put_catalog(http, LOTTERY)
        assert (await http.put("/v1/admin/clock", json={"now": ENTRIES_OPEN})).status_code == 200
        entered = await asyncio.gather(
            *(
                http.post("/v1/entries", json=entry_body(choices=["09:00", "14:00"]))
                for _ in range(40)
            )
        )
        assert [r.status_code for r in entered] == [201] * 40
        record = f"/v1/offices/{OFFICE_ID}/releases/{DAY}"
        assert (await http.get(record)).json()["status"] == "taking_entries"
        # The clock crosses the opening instant; an admin call races the scheduler's leader.
        assert (await http.put("/v1/admin/clock", json={"now": DRAW_AT})).status_code == 200
        crossed = time.monotonic()
        pending = await http.post("/v1/bookings", json=booking_body(date=DAY))
        assert pending.status_code == 409, pending.text
        assert pending.json()["code"] in ("draw_pending", "slot_full")  # slot_full: drawn
        racing = asyncio.create_task(http.post("/v1/admin/jobs/draw-releases"))
        while (await http.get(record)).json()["status"] != "drawn":
            assert time.monotonic() - crossed < DRAW_WITHIN_S + 1, "not drawn in time"
            await asyncio.sleep(0.1)
        raced = await racing
        assert raced.status_code == 200, raced.text
        drawn = (await http.get(record)).json()
        assert drawn["entries"] == 40
        assert drawn["won"] == 5  # 3 + 2 seats chosen, each won once
        listing = (await http.get(f"{record}/draw", params={"limit": 100})).json()["items"]
        assert [i["rank"] for i in listing] == list(range(1, 41))
        assert len({i["entry_id"] for i in listing}) == 40
        feed = (await http.get("/v1/events", params={"limit": 1000})).json()["items"]
        kinds = [e["type"] for e in feed]
        assert (kinds.count("entry.won"), kinds.count("entry.lost")) == (5, 35)
        # Then first come, first served: the day's seats are gone to the draw's winners.
        after = await http.post("/v1/bookings", json=booking_body(date=DAY))
        assert after.status_code == 409, after.text
        assert after.json()["code"] == "slot_full"
