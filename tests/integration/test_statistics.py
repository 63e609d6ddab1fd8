"""statistics.py on real Postgres: a plan cached while a table was small is planned again, by
index, once the table outgrew its statistics and the refresh counted it again."""

from __future__ import annotations

import asyncpg

from slots_service import statistics
from slots_service.runtime import Runtime

# `book`'s look-up of the person (queries.sql), prepared as the API's connections prepare it.
_PERSON = (
    "PREPARE person(bytea) AS SELECT id, blocked_until, party_seq FROM people WHERE id_hmac = $1"
)
_PLAN = "EXPLAIN (COSTS OFF) EXECUTE person('\\x00')"


async def _people(conn: asyncpg.Connection, first: int, count: int) -> None:
    await conn.execute(
        "INSERT INTO people (id_hmac, id_type, id_masked, created_at)"
        " SELECT sha256(i::text::bytea), 'passport', 'M***1', now()"
        " FROM generate_series($1::int, $2::int) AS i",
        first,
        first + count - 1,
    )


async def _plan(conn: asyncpg.Connection) -> str:
    return "\n".join(row[0] for row in await conn.fetch(_PLAN))


async def test_a_plan_cached_while_a_table_was_small_is_made_again_by_index(rt: Runtime) -> None:
    conn = await asyncpg.connect(rt.settings.database_url)
    try:
        await _people(conn, 1, 50)
        await conn.execute("ANALYZE people")  # what autovacuum does at a table's first rows
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(_PERSON)
        assert "Seq Scan on people" in await _plan(conn)  # right for 50 rows
        await _people(conn, 51, 20_000)
        # The cached plan stays what it was while the table grows: the hazard.
        assert "Seq Scan on people" in await _plan(conn)
        assert "people" in await statistics.refresh(rt.pool)
        plan = await _plan(conn)
        assert "Seq Scan" not in plan
        assert "people_identity" in plan
        # counted now: the next round leaves it
        assert "people" not in await statistics.refresh(rt.pool)
    finally:
        await conn.close()


async def test_tables_that_kept_their_size_are_left_alone(rt: Runtime) -> None:
    conn = await asyncpg.connect(rt.settings.database_url)
    try:
        await _people(conn, 1, 20)
        await conn.execute("ANALYZE")
        assert await statistics.refresh(rt.pool) == []
        counted = await conn.fetchval("SELECT relpages FROM pg_class WHERE relname = 'people'")
        assert counted == 1
    finally:
        await conn.close()


async def test_every_table_kept_counted_is_a_table_of_the_schema(rt: Runtime) -> None:
    """What `analyze_<table>` names (queries.sql) is in the migrated schema, the booking
    path's tables among them."""
    assert {"people", "bookings", "booking_members", "events"} <= set(statistics.TABLES)
    found = await rt.pool.fetch(
        "SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NULL",
        list(statistics.TABLES),
    )
    assert found == []
