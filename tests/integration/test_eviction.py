"""A Redis that may evict the gate's counters is refused at start (or, when allowed, shown as
`"redis": "evicting"` in /readyz), checked against real Valkeys started with such policies."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from slots_service.app import create_app
from slots_service.config import ConfigError
from slots_service.devservers import DevServers
from slots_service.runtime import Runtime
from tests.conftest import API_KEYS, make_settings


def _valkey(root: Path, **config: str) -> Iterator[str]:
    with DevServers(root, postgres=False, valkey_config=config) as servers:
        yield servers.redis_url


@pytest.fixture
def lru_redis(tmp_path: Path) -> Iterator[str]:
    yield from _valkey(tmp_path, **{"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru"})


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
async def test_a_redis_that_may_evict_is_refused_at_start(
    database_url: str, tmp_path: Path, policy: str
) -> None:
    for url in _valkey(tmp_path, **{"maxmemory": "64mb", "maxmemory-policy": policy}):
        with pytest.raises(ConfigError, match=f"{policy}.*noeviction"):
            await Runtime.start(make_settings(database_url, url))


def test_serve_exits_with_a_clear_message(database_url: str, lru_redis: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": lru_redis,
        "SLOTS_API_KEYS": API_KEYS,
        "SLOTS_PII_KEY": "eviction-pii-key-0123456789",
    }
    done = subprocess.run(
        [sys.executable, "-m", "slots_service", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "maxmemory-policy is 'allkeys-lru'" in done.stderr
    assert "noeviction" in done.stderr


async def test_allowed_eviction_runs_and_readyz_says_evicting(
    database_url: str, lru_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, lru_redis, redis_allow_eviction=True)
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"postgres": "ok", "redis": "evicting"}
    assert "allkeys-lru" in caplog.text


async def test_a_redis_that_forbids_config_get_is_warned_about_once(
    database_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As a managed Redis does: an ACL user without the CONFIG command."""
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await admin.acl_setuser(
            "gate",
            enabled=True,
            passwords=["+gate-pass"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-config"],
        )
        host_port = redis_url.removeprefix("redis://")
        settings = make_settings(database_url, f"redis://gate:gate-pass@{host_port}")
        async with AsyncTestClient(app=create_app(settings)) as client:
            for _ in range(3):
                response = await client.get("/readyz")
                assert response.json() == {"postgres": "ok", "redis": "ok"}
    finally:
        await admin.acl_deluser("gate")
        await admin.aclose()
    assert caplog.text.count("refuses CONFIG GET") == 1


async def test_the_test_servers_do_not_evict(rt: Runtime) -> None:
    assert await rt.counters.eviction_policy() == "noeviction"
