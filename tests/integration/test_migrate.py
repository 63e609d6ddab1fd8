"""Migrations: numbered files applied once, under an advisory lock, safe to run concurrently."""

import asyncio

import asyncpg

from slots_service.db import migrate, migrations
from slots_service.devservers import DevServers


async def test_migrate_applies_each_file_once_even_when_run_concurrently(
    servers: DevServers,
) -> None:
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute("DROP DATABASE IF EXISTS migrate_twice WITH (FORCE)")
        await admin.execute("CREATE DATABASE migrate_twice")
    finally:
        await admin.close()
    url = servers.database_url.rsplit("/", 1)[0] + "/migrate_twice"
    first, second = await asyncio.gather(migrate(url), migrate(url))
    names = [name for _, name, _ in migrations()]
    assert sorted([first, second], key=len) == [[], names]
    assert await migrate(url) == []
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")
        assert [r["name"] for r in rows] == names
        assert await conn.fetchval("SELECT count(*) FROM windows") == 0
    finally:
        await conn.close()
