"""A real 3-master Valkey cluster for this test process (an xdist worker), on free loopback
ports; `redis_url` is overridden here, so `settings`, `rt` and the race tests' fixtures run the
gate on the cluster (REDIS_URL redis+cluster://...), flushed on every primary per test; `ready`
is the race tests' own fixture (catalog in place, horizon counted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from slots_service.counters import day_key
from slots_service.devservers import ValkeyCluster
from tests.conftest import OFFICE_ID
from tests.integration.test_booking_race import DAY, ready  # noqa: F401 (the race tests' fixture)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """Started from the main thread (its servers die with it), as DevServers are."""
    with ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"), masters=3) as found:
        yield found


@pytest.fixture
async def redis_url(cluster: ValkeyCluster) -> str:
    for url in cluster.node_urls:
        client = aioredis.Redis.from_url(url)
        try:
            await client.flushall()
        finally:
            await client.aclose()
    return cluster.url


@pytest.fixture
def day_node(cluster: ValkeyCluster) -> str:
    """A plain redis:// URL of the primary that holds the race tests' day."""
    return cluster.node_url_for(day_key(OFFICE_ID, DAY))
