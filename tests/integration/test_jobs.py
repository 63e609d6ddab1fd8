"""The scheduler's leader lock, reconcile, and the invariant that Redis counters and the
durable record agree after any mix of bookings, cancellations, reschedules and check-ins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from slots_service import booking, errors, leaving
from slots_service.config import Settings
from slots_service.counters import day_key
from slots_service.jobs import Scheduler, open_horizon, reconcile
from slots_service.models import BookingIn, CancelIn, PersonIn, RescheduleIn
from slots_service.runtime import Runtime
from tests.conftest import OFFICE_ID, SERVICE_ID
from tests.integration.helpers import prepare_catalog

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
DAY = date(2026, 11, 25)
STARTS = ["09:00", "09:30", "14:00", "14:30"]


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll a zero-argument callable until it is true (the leader lock is polled, not timed)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_one_leader_among_replicas_and_failover(settings: Settings) -> None:
    runtimes = [await Runtime.start(settings) for _ in range(2)]
    schedulers = [Scheduler(rt, poll_s=0.2) for rt in runtimes]
    try:
        for s in schedulers:
            s.start()
        assert await wait_until(lambda: any(s.leading for s in schedulers))
        await asyncio.sleep(0.5)  # several polls: the other one must still be waiting
        assert sum(s.leading for s in schedulers) == 1
        leader = next(s for s in schedulers if s.leading)
        follower = next(s for s in schedulers if not s.leading)
        await leader.stop()
        assert await wait_until(lambda: follower.leading)
    finally:
        for s in schedulers:
            await s.stop()
        for rt in runtimes:
            await rt.close()


async def counters(url: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(url)
    try:
        raw = await client.hgetall(day_key(OFFICE_ID, DAY))
    finally:
        await client.aclose()
    return {str(k, "utf-8") if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}


async def durable_remaining(rt: Runtime) -> dict[str, int]:
    rows = await rt.pool.fetch(
        "SELECT to_char(start_time, 'HH24:MI') AS start, capacity - booked AS remaining,"
        " booked, (SELECT coalesce(sum(party_size), 0) FROM bookings b"
        "          WHERE b.window_id = w.id AND b.status IN ('booked', 'checked_in')) AS held"
        " FROM windows w WHERE office_id = $1 AND day = $2",
        OFFICE_ID,
        DAY,
    )
    for r in rows:
        assert r["booked"] == r["held"], "windows.booked must equal the seats of its bookings"
    return {r["start"]: max(0, r["remaining"]) for r in rows}


async def test_reconcile_rewrites_drifted_and_missing_counters(
    rt: Runtime, settings: Settings
) -> None:
    await prepare_catalog(rt, NOW)
    client = aioredis.Redis.from_url(settings.redis_url)
    await client.hset(day_key(OFFICE_ID, DAY), "09:00", 99)
    await client.hdel(day_key(OFFICE_ID, DAY), "09:30")
    await client.aclose()
    result = await reconcile(rt, NOW)
    assert result["windows_corrected"] == 2
    assert await counters(settings.redis_url) == await durable_remaining(rt)
    assert (await reconcile(rt, NOW))["windows_corrected"] == 0


def person(k: int) -> PersonIn:
    return PersonIn(
        id_type="passport", id_number=f"H{k:08d}", name=f"H {k}", phone=f"+86136{k:08d}"
    )


operation = st.one_of(
    st.tuples(st.just("book"), st.integers(0, 11), st.sampled_from(STARTS), st.integers(1, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 11), st.sampled_from(["person", "office"])),
    st.tuples(st.just("move"), st.integers(0, 11), st.sampled_from(STARTS)),
    st.tuples(st.just("check_in"), st.integers(0, 11)),
)


@pytest.fixture
async def prepared(rt: Runtime) -> Runtime:
    await prepare_catalog(rt, NOW)
    return rt


@hsettings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(st.lists(operation, min_size=1, max_size=8), min_size=1, max_size=4))
async def test_counters_equal_the_durable_record(
    prepared: Runtime, settings: Settings, batches: list[list[tuple[Any, ...]]]
) -> None:
    rt = prepared
    await rt.pool.execute(
        "TRUNCATE booking_members, bookings, events, people, tickets; UPDATE windows SET booked = 0"
    )
    await reconcile(rt, NOW)
    # check-in needs the window's hour: on the day itself, an hour before 09:00
    check_in_time = datetime.fromisoformat("2026-11-25T08:30:00+08:00")
    ids: dict[int, str] = {}

    async def run(op: tuple[Any, ...]) -> None:
        kind, k = op[0], op[1]
        try:
            if kind == "book":
                body = BookingIn(
                    office_id=OFFICE_ID,
                    service_id=SERVICE_ID,
                    date=DAY,
                    start=op[2],
                    party_size=op[3],
                    person=person(k),
                )
                ids[k] = (await booking.book(rt, body, NOW, None)).id
            elif k in ids and kind == "cancel":
                await leaving.cancel(rt, ids[k], CancelIn(by=op[2], reason="t"), NOW)
            elif k in ids and kind == "move":
                await leaving.reschedule(rt, ids[k], RescheduleIn(date=DAY, start=str(op[2])), NOW)
            elif k in ids and kind == "check_in":
                await booking.check_in(rt, ids[k], check_in_time)
        except errors.DomainError:
            pass

    for batch in batches:  # each batch runs concurrently
        await asyncio.gather(*(run(op) for op in batch))
    assert await counters(settings.redis_url) == await durable_remaining(rt)


async def test_the_next_day_is_ready_in_redis_before_it_opens(
    prepared: Runtime, settings: Settings
) -> None:
    """Tue Dec 8 enters the horizon at 00:00 local; it is planned and counted half an hour
    before, but not bookable until then."""
    evening = datetime.fromisoformat("2026-11-23T22:00:00+08:00")
    ahead = datetime.fromisoformat("2026-11-23T23:40:00+08:00")
    assert (await open_horizon(prepared, evening))["days_opened"] == 0
    assert await open_horizon(prepared, ahead) == {"days_opened": 1, "windows_created": 4}
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        counted = await client.hgetall(day_key(OFFICE_ID, date(2026, 12, 8)))
    finally:
        await client.aclose()
    assert counted == {b"09:00": b"3", b"09:30": b"3", b"14:00": b"2", b"14:30": b"2"}
    early = BookingIn(
        office_id=OFFICE_ID,
        service_id=SERVICE_ID,
        date=date(2026, 12, 8),
        start="09:00",
        person=person(1),
    )
    with pytest.raises(errors.NotBookable):
        await booking.book(prepared, early, ahead, None)
    midnight = datetime.fromisoformat("2026-11-24T00:00:00+08:00")
    assert (await open_horizon(prepared, midnight))["days_opened"] == 0
    made = await booking.book(prepared, early, midnight, None)
    assert made.status == "booked"
