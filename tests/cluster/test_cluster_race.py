"""The booking races again with the gate on a real Redis Cluster (3 primaries): a flash crowd,
a primary that lost its data, reconcile, scripts flushed from every node; and the cluster
client's own ways to fail (a busy pool, an unreachable seed, a primary that may evict)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MaxConnectionsError

from slots_service import metrics
from slots_service.config import ConfigError
from slots_service.counters import Counters, Gate, day_key
from slots_service.devservers import ValkeyCluster, free_port
from slots_service.jobs import reconcile
from slots_service.runtime import Runtime
from tests.conftest import OFFICE_ID
from tests.integration.test_booking_race import (
    CROWD,
    DAY,
    NOW,
    crowd,
    durable,
    redis_remaining,
)
from tests.integration.test_jobs import counters as day_counters
from tests.integration.test_jobs import durable_remaining


def bypassed() -> float:
    value = metrics.registry.get_sample_value("slots_redis_gate_total", {"result": "bypassed"})
    return value or 0.0


async def on_node(url: str, *command: str | int) -> object:
    client = aioredis.Redis.from_url(url)
    try:
        return await client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


async def test_the_gate_runs_on_the_cluster(ready: Runtime, day_node: str) -> None:
    assert isinstance(ready.counters._client, RedisCluster)
    assert await redis_remaining(day_node) == 3  # counted on the primary of the day's slot
    assert await ready.counters.ping()
    assert await ready.counters.eviction_policy() == "noeviction"


async def test_crowd_on_the_cluster_sells_exactly_the_seats(ready: Runtime, day_node: str) -> None:
    before = bypassed()
    outcomes = await crowd(ready, CROWD)
    assert outcomes == Counter({"created": 3, "slot_full": CROWD - 3})
    assert await durable(ready) == (3, 3, 3)
    assert await redis_remaining(day_node) == 0
    assert bypassed() == before  # 300 at once waited for the connections, none went around


async def test_crowd_after_a_primary_lost_its_data(ready: Runtime, day_node: str) -> None:
    await crowd(ready, 1)  # one seat sold through the gate
    await on_node(day_node, "FLUSHALL")  # that primary restarted empty
    outcomes = await crowd(ready, CROWD)
    assert outcomes["created"] == 2
    assert outcomes["active_booking_exists"] + outcomes["created"] + outcomes["slot_full"] == CROWD
    assert await durable(ready) == (3, 3, 3)
    await ready.seats.fill(OFFICE_ID, DAY, replace=True)
    assert await redis_remaining(day_node) == 0


async def test_reconcile_restores_exact_counters_on_every_primary(
    ready: Runtime, cluster: ValkeyCluster, day_node: str
) -> None:
    await crowd(ready, 2)
    for url in cluster.node_urls:
        await on_node(url, "FLUSHALL")  # every primary lost the horizon's counters
    result = await reconcile(ready, NOW)
    assert result["windows_corrected"] > 0
    assert await day_counters(day_node) == await durable_remaining(ready)
    for url in cluster.node_urls:  # the horizon's days live on all three primaries
        assert await on_node(url, "DBSIZE")
    await on_node(day_node, "HSET", day_key(OFFICE_ID, DAY), "09:00", 99)  # drifted up
    assert (await reconcile(ready, NOW))["windows_corrected"] == 1
    assert await day_counters(day_node) == await durable_remaining(ready)
    assert (await reconcile(ready, NOW))["windows_corrected"] == 0


async def test_scripts_flushed_from_every_node_are_loaded_again(
    ready: Runtime, cluster: ValkeyCluster, day_node: str
) -> None:
    await crowd(ready, 1)  # the scripts are loaded
    for url in cluster.node_urls:
        await on_node(url, "SCRIPT", "FLUSH")
    before = bypassed()
    outcomes = await crowd(ready, CROWD, first=1)  # NOSCRIPT: SCRIPT LOAD, EVALSHA again
    assert outcomes == Counter({"created": 2, "slot_full": CROWD - 2})
    assert await redis_remaining(day_node) == 0
    assert bypassed() == before


async def test_a_burst_beyond_the_connections_waits_its_turn(cluster: ValkeyCluster) -> None:
    """Far more calls at once than a node has connections: none fails, on any primary."""
    for url in cluster.node_urls:
        await on_node(url, "FLUSHALL")
    counters = Counters(cluster.url, timeout_s=0.5)
    await counters.start()
    day = date(2026, 11, 25)
    offices = [f"office-{k}" for k in range(12)]  # their days fall on all three primaries
    assert {cluster.node_url_for(day_key(o, day)) for o in offices} == set(cluster.node_urls)
    try:
        for office in offices:
            assert await counters.fill(office, day, {"09:00": 20}, 3600, replace=False) == 1
        takes = [counters.take(o, day, "09:00", 1) for o in offices for _ in range(50)]
        answers = Counter(await asyncio.gather(*takes))
        assert answers == Counter({Gate.TAKEN: 20 * 12, Gate.FULL: 30 * 12})
        limited = await asyncio.gather(*(counters.over_limit("k", 100, 60) for _ in range(150)))
        assert sum(1 for wait in limited if wait) == 50
        assert counters._usable()
    finally:
        await counters.close()


async def test_a_busy_cluster_pool_counts_as_slow_not_down() -> None:
    counters = Counters(f"redis+cluster://127.0.0.1:{free_port()}", timeout_s=0.2)
    try:
        counters._failed(MaxConnectionsError())
        counters._failed(MaxConnectionsError())
        assert counters._usable()  # busy, still asked
        counters._failed(MaxConnectionsError())
        assert not counters._usable()  # busy three times in a row: bypass for a while
    finally:
        await counters.close()


async def test_an_unreachable_cluster_is_bypassed_from_the_start() -> None:
    counters = Counters(f"redis+cluster://127.0.0.1:{free_port()}", timeout_s=0.2)
    try:
        await counters.start()  # no exception: the service starts on Postgres alone
        assert not counters._usable()
        assert await counters.take("o", DAY, "09:00", 1) is Gate.BYPASSED
        assert await counters.eviction_policy() is None
        assert not await counters.ping()
    finally:
        await counters.close()


async def test_one_primary_that_may_evict_is_refused(cluster: ValkeyCluster) -> None:
    last = cluster.node_urls[-1]
    await on_node(last, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    counters = Counters(cluster.url, timeout_s=0.5)
    try:
        await counters.start()
        with pytest.raises(ConfigError, match=r"allkeys-lru.*noeviction"):
            await counters.check_eviction(allow=False)
    finally:
        await counters.close()
        await on_node(last, "CONFIG", "SET", "maxmemory-policy", "noeviction")
