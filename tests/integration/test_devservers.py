"""DevServers: real Postgres 18 and Valkey answer, Valkey restarts empty on the same port, and
no server outlives a stop() or a killed owner."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from slots_service.devservers import DevServers, free_port

# Starts DevServers in a process of its own, says so, then waits to be killed.
OWNER = """
import sys, time
from pathlib import Path
from slots_service.devservers import DevServers
servers = DevServers(Path(sys.argv[1]))
servers.start()
print(servers.database_url, flush=True)
time.sleep(600)
"""


def processes_under(root: Path) -> list[int]:
    """Live processes working under `root`: the servers and every postgres backend, which all
    run in their data directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:  # gone, or a zombie
                continue
            if cwd.is_relative_to(root.resolve()):
                pids.append(int(entry.name))
    return pids


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def select_one(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServers]:
    with DevServers(tmp_path_factory.mktemp("devservers")) as started:
        yield started


async def test_postgres_18_accepts_connections(servers: DevServers) -> None:
    conn = await asyncpg.connect(servers.database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert str(await conn.fetchval("SHOW server_version")).startswith("18")
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
        assert await conn.fetchval("SHOW max_connections") == "200"
        assert await conn.fetchval("SELECT upper('café')") == "CAFÉ"
    finally:
        await conn.close()
    assert servers.database_url.startswith("postgresql://postgres@127.0.0.1:")


async def test_redis_restart_loses_data_on_the_same_port(servers: DevServers) -> None:
    url = servers.redis_url
    client = aioredis.from_url(url)
    try:
        assert await client.ping() is True
        await client.set("seat", "taken")
        assert await client.get("seat") == b"taken"

        servers.stop_redis()
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()

        servers.start_redis()
        assert servers.redis_url == url
        assert await client.ping() is True
        assert await client.get("seat") is None
    finally:
        await client.aclose()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    servers = DevServers(tmp_path)
    servers.start()
    assert asyncio.run(select_one(servers.database_url)) == 1
    running = processes_under(tmp_path)
    assert len(running) >= 3  # valkey, postmaster and its background workers

    servers.stop()
    assert processes_under(tmp_path) == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in running)
    servers.stop()  # idempotent


def test_killed_owner_leaves_no_orphan_and_the_next_start_works(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().startswith("postgresql://")
        assert processes_under(tmp_path)
    finally:
        owner.kill()
        owner.wait()
        assert owner.stdout is not None
        owner.stdout.close()

    assert wait_for(lambda: processes_under(tmp_path) == [])
    assert (tmp_path / "pg" / "postmaster.pid").exists()  # stale, as a killed run leaves it
    with DevServers(tmp_path) as servers:
        assert asyncio.run(select_one(servers.database_url)) == 1


def test_a_server_left_running_in_the_directory_is_replaced(tmp_path: Path) -> None:
    first = DevServers(tmp_path, redis=False)
    first.start()
    left_running = processes_under(tmp_path)
    try:
        with DevServers(tmp_path, redis=False) as second:
            assert second.database_url != first.database_url
            assert not set(left_running) & set(processes_under(tmp_path))
            assert asyncio.run(select_one(second.database_url)) == 1
    finally:
        first.stop()
    assert processes_under(tmp_path) == []


def test_free_port_is_bindable_and_in_range() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert all(20000 <= port < 32000 for port in ports)
