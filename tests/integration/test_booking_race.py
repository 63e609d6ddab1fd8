"""Flash crowds: hundreds of simultaneous bookings for a few seats, with Redis healthy, with
Redis gone, after Redis lost its data, and with Redis counters drifted. Postgres decides."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import date, datetime

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from slots_service import booking, errors, leaving
from slots_service.config import Settings
from slots_service.counters import day_key
from slots_service.devservers import DevServers
from slots_service.models import BookingIn, CancelIn, PersonIn
from slots_service.runtime import Runtime
from tests.conftest import OFFICE_ID, SERVICE_ID
from tests.integration.helpers import prepare_catalog

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
DAY = date(2026, 11, 25)
CROWD = 300


def request(k: int, start: str = "09:00", party: int = 1) -> BookingIn:
    return BookingIn(
        office_id=OFFICE_ID,
        service_id=SERVICE_ID,
        date=DAY,
        start=start,
        party_size=party,
        person=PersonIn(
            id_type="passport", id_number=f"R{k:08d}", name=f"P {k}", phone=f"+86137{k:08d}"
        ),
    )


async def crowd(
    rt: Runtime, n: int, start: str = "09:00", party: int = 1, first: int = 0
) -> Counter[str]:
    """n different people (numbered from `first`) book one window at once; outcomes counted."""

    async def one(k: int) -> str:
        try:
            await booking.book(rt, request(k, start, party), NOW, None)
        except errors.DomainError as exc:
            return exc.code
        return "created"

    return Counter(await asyncio.gather(*(one(k) for k in range(first, first + n))))


async def durable(rt: Runtime, start: str = "09:00") -> tuple[int, int, int]:
    """(window.booked, sum of party sizes of booked bookings, capacity) in Postgres."""
    row = await rt.pool.fetchrow(
        "SELECT w.booked, w.capacity, coalesce(sum(b.party_size) FILTER"
        " (WHERE b.status IN ('booked', 'checked_in')), 0) AS held"
        " FROM windows w LEFT JOIN bookings b ON b.window_id = w.id"
        " WHERE w.office_id = $1 AND w.day = $2 AND w.start_time = $3::text::time"
        " GROUP BY w.id",
        OFFICE_ID,
        DAY,
        start,
    )
    assert row is not None
    return row["booked"], row["held"], row["capacity"]


async def redis_remaining(url: str, start: str = "09:00") -> int | None:
    client = aioredis.Redis.from_url(url)
    try:
        value = await client.hget(day_key(OFFICE_ID, DAY), start)
    finally:
        await client.aclose()
    return None if value is None else int(value)


@pytest.fixture
async def ready(rt: Runtime) -> Runtime:
    await prepare_catalog(rt, NOW)
    return rt


async def test_crowd_with_redis_sells_exactly_the_seats(ready: Runtime, settings: Settings) -> None:
    outcomes = await crowd(ready, CROWD)
    assert outcomes == Counter({"created": 3, "slot_full": CROWD - 3})
    assert await durable(ready) == (3, 3, 3)
    assert await redis_remaining(settings.redis_url) == 0


async def test_crowd_without_redis_postgres_alone_sells_exactly_the_seats(
    settings: Settings,
) -> None:
    rt = await Runtime.start(replace(settings, redis_url=""))
    try:
        await prepare_catalog(rt, NOW)
        outcomes = await crowd(rt, CROWD)
        assert outcomes == Counter({"created": 3, "slot_full": CROWD - 3})
        assert await durable(rt) == (3, 3, 3)
    finally:
        await rt.close()


async def test_crowd_after_redis_lost_its_data(ready: Runtime, settings: Settings) -> None:
    await crowd(ready, 1)  # one seat sold through the gate
    client = aioredis.Redis.from_url(settings.redis_url)
    await client.flushall()  # Redis restarted empty: every counter gone
    await client.aclose()
    outcomes = await crowd(ready, CROWD)
    # person 0 already holds a booking; the others race for the 2 seats left
    assert outcomes["created"] == 2
    assert outcomes["active_booking_exists"] + outcomes["created"] + outcomes["slot_full"] == CROWD
    assert await durable(ready) == (3, 3, 3)
    # The background refill read Postgres while bookings were in flight: Redis may count a
    # seat as free that is sold (Postgres still refuses it); reconcile makes them equal.
    await ready.seats.fill(OFFICE_ID, DAY, replace=True)
    assert await redis_remaining(settings.redis_url) == 0


async def test_redis_counting_too_many_seats_cannot_oversell(
    ready: Runtime, settings: Settings
) -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    await client.hset(day_key(OFFICE_ID, DAY), "09:00", 1000)  # drifted far up
    await client.aclose()
    outcomes = await crowd(ready, CROWD)
    assert outcomes == Counter({"created": 3, "slot_full": CROWD - 3})
    assert await durable(ready) == (3, 3, 3)
    # every take Postgres refused is kept: the drifted counter falls towards the truth
    assert await redis_remaining(settings.redis_url) == 1000 - CROWD


async def test_group_bookings_are_all_or_nothing(ready: Runtime) -> None:
    outcomes = await crowd(ready, 50, party=2)  # 3 seats: one pair fits, never 1.5 pairs
    assert outcomes == Counter({"created": 1, "slot_full": 49})
    assert await durable(ready) == (2, 2, 3)


async def test_cancel_frees_seats_for_the_crowd(ready: Runtime, settings: Settings) -> None:
    await crowd(ready, CROWD)
    row = await ready.pool.fetchrow("SELECT id FROM bookings ORDER BY id LIMIT 1")
    assert row is not None
    await leaving.cancel(ready, row["id"], CancelIn(by="office", reason="test"), NOW)
    assert await redis_remaining(settings.redis_url) == 1
    outcomes = await crowd(ready, 100, first=CROWD)  # newcomers race for the freed seat
    assert outcomes == Counter({"created": 1, "slot_full": 99})
    assert await durable(ready) == (3, 3, 3)


async def test_redis_down_mid_crowd(
    servers: DevServers, ready: Runtime, settings: Settings
) -> None:
    """Valkey stops while the crowd books: the rest go through Postgres alone."""
    first = asyncio.ensure_future(crowd(ready, 150))
    await asyncio.sleep(0)
    servers.stop_redis()
    try:
        second = await crowd(ready, 150, start="09:30")
        outcomes = await first
    finally:
        servers.start_redis()
    assert outcomes["created"] == 3
    assert second["created"] == 3
    assert await durable(ready) == (3, 3, 3)
    assert await durable(ready, "09:30") == (3, 3, 3)


async def test_concurrent_same_person_gets_one_booking(ready: Runtime) -> None:
    same = request(7)

    async def one() -> str:
        try:
            await booking.book(ready, same, NOW, None)
        except errors.DomainError as exc:
            return exc.code
        return "created"

    outcomes = Counter(await asyncio.gather(*(one() for _ in range(40))))
    assert outcomes["created"] == 1
    # the gate may hand this person several seats; Postgres keeps one and they go back
    refusals = {"active_booking_exists", "daily_limit_reached", "slot_full", "rate_limited"}
    assert set(outcomes) - {"created"} <= refusals
    assert await durable(ready) == (1, 1, 3)


async def test_concurrent_people_sharing_a_phone(ready: Runtime) -> None:
    def shared_phone(k: int) -> BookingIn:
        body = request(k)
        return msgspec.structs.replace(
            body, person=msgspec.structs.replace(body.person, phone="+8613900000000")
        )

    async def one(k: int) -> str:
        try:
            await booking.book(ready, shared_phone(k), NOW, None)
        except errors.DomainError as exc:
            return exc.code
        return "created"

    outcomes = Counter(await asyncio.gather(*(one(k) for k in range(30))))
    assert outcomes["created"] == 1
    assert set(outcomes) <= {"created", "phone_bound_to_other_person", "slot_full"}
    owners = await ready.pool.fetchval("SELECT count(*) FROM people WHERE phone_hmac IS NOT NULL")
    assert owners == 1


async def test_database_unreachable_gives_unavailable_and_seats_back(
    ready: Runtime, settings: Settings
) -> None:
    """The gate took the seat, then Postgres was gone: 503 and the seat goes back."""
    before = await redis_remaining(settings.redis_url)
    broken = await Runtime.start(settings)
    try:
        await broken.catalog.offices()  # cached; then the database goes away
        broken.days.opened = set(ready.days.opened)
        await broken.pool.close()
        broken.pool = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/x", min_size=0)
        with pytest.raises(errors.Unavailable):
            await booking.book(broken, request(1), NOW, None)
    finally:
        await broken.close()
    assert await redis_remaining(settings.redis_url) == before == 3
    assert await durable(ready) == (0, 0, 3)
