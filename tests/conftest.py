"""Real Postgres and Valkey for the suite: one server pair per xdist worker, a fresh database
per test cloned from a migrated template, Valkey flushed per test."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from slots_service.app import create_app
from slots_service.config import Settings, load_settings
from slots_service.db import migrate
from slots_service.devservers import DevServers
from slots_service.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "test-admin-key"
READER_KEY = "test-reader-key"
WRITER_KEY = "test-writer-key"
CHECKIN_KEY = "test-checkin-key"
API_KEYS = (
    f"{ADMIN_KEY}=admin,bookings:read,bookings:write,checkin,events:read;"
    f"{READER_KEY}=bookings:read;{WRITER_KEY}=bookings:write;{CHECKIN_KEY}=checkin"
)
TEMPLATE = "slots_template"
_numbers = itertools.count()


@pytest.fixture(scope="session")
def servers() -> Iterator[DevServers]:
    """Embedded Postgres + Valkey for this test process (an xdist worker), started from the
    main thread, under .devdata/test-<pid> so that parallel runs never share servers."""
    base = ROOT / ".devdata"
    for stale in base.glob("test-*"):  # left by killed runs
        pid = stale.name.removeprefix("test-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    root = base / f"test-{os.getpid()}"
    try:
        with DevServers(root) as found:
            asyncio.run(_make_template(found.database_url))
            yield found
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _make_template(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    await migrate(_database(url, TEMPLATE))


def _database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@asynccontextmanager
async def fresh_database(servers: DevServers) -> AsyncIterator[str]:
    """A fresh, migrated database (~20 ms: a file copy of the template), dropped after."""
    name = f"t_{os.getpid()}_{next(_numbers)}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
    finally:
        await admin.close()
    try:
        yield _database(servers.database_url, name)
    finally:
        admin = await asyncpg.connect(servers.database_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture
async def database_url(servers: DevServers) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with fresh_database(servers) as url:
        yield url


@pytest.fixture
async def redis_url(servers: DevServers) -> str:
    client = aioredis.Redis.from_url(servers.redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return servers.redis_url


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SLOTS_API_KEYS": API_KEYS,
        "SLOTS_PII_KEY": "test-pii-key-0123456789abcdef",
        "SLOTS_TEST_CLOCK": "1",
        "SLOTS_DB_POOL_SIZE": "20",
    }
    settings = load_settings(env)
    if overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)
    return settings


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url)


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = await Runtime.start(settings)
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan included) behind an in-process HTTP client, admin key set."""
    app = create_app(settings)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as test_client:
        test_client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield test_client


# ---------------------------------------------------------------- a small catalog


SERVICE: dict[str, Any] = {
    "name": "居留许可-首次 Residence permit, first time",
    "cancel_cutoff": {"kind": "day_before", "time": "18:00"},
    "max_party_size": 5,
    "requires_reference": False,
}
WEEK: dict[str, Any] = {
    day: [
        {"start": "09:00", "end": "10:00", "capacity": 3},
        {"start": "14:00", "end": "15:00", "capacity": 2},
    ]
    for day in ("mon", "tue", "wed", "thu", "fri")
}
OFFICE: dict[str, Any] = {
    "name": "深圳市公安局出入境管理局(外国人)",
    "timezone": "Asia/Shanghai",
    "services": ["residence-permit-first"],
    "window_minutes": 30,
    "hours": WEEK,
}
OFFICE_ID = "sz-exit-entry-foreigners"
SERVICE_ID = "residence-permit-first"
# Monday 2026-11-23 10:00 in Shenzhen: the horizon is Tue 11-24 .. Mon 12-07.
NOW = "2026-11-23T10:00:00+08:00"
TUESDAY = "2026-11-24"
WEDNESDAY = "2026-11-25"


async def set_clock(client: httpx.AsyncClient, instant: str) -> None:
    response = await client.put("/v1/admin/clock", json={"now": instant})
    assert response.status_code == 200, response.text


@pytest.fixture
async def catalog(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, with one office and one service in place and the clock at NOW."""
    await set_clock(client, NOW)
    assert (await client.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
    assert (await client.put(f"/v1/offices/{OFFICE_ID}", json=OFFICE)).status_code == 200
    return client


_people = itertools.count(1)


def person(n: int | None = None, **overrides: str) -> dict[str, str]:
    """A distinct real-looking identity and phone per call."""
    k = next(_people) if n is None else n
    found = {
        "id_type": "passport",
        "id_number": f"M{k:08d}",
        "name": f"PERSON {k}",
        "phone": f"+86139{k:08d}",
    }
    found.update(overrides)
    return found


def booking_body(
    who: dict[str, str] | None = None, date: str = WEDNESDAY, start: str = "09:00", **extra: Any
) -> dict[str, Any]:
    return {
        "office_id": OFFICE_ID,
        "service_id": SERVICE_ID,
        "date": date,
        "start": start,
        "person": who or person(),
        **extra,
    }


def local(instant: str) -> datetime:
    return datetime.fromisoformat(instant)
