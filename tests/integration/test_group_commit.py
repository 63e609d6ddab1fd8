"""Group commit (group_commit.py): plain bookings that arrive together are decided in one
transaction, and each keeps what it promised alone. On real Postgres, really concurrent:
- the callers of one batch each get their own row, all committed by one transaction;
- a statement that raises rolls its whole batch back, and every booking of it is then decided
  alone, with the answer it would have had alone;
- a batch whose connection gives no answer fails every caller with 503 and commits nothing;
- a caller that left before its batch was sent is not booked.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import msgspec
import pytest

from slots_service import booking, errors, metrics, people
from slots_service.config import Settings
from slots_service.group_commit import GroupCommit
from slots_service.models import BookingIn
from slots_service.runtime import Runtime
from tests.integration.helpers import prepare_catalog
from tests.integration.test_booking_race import NOW, durable, request

_PROBE = "INSERT INTO gc_probe (x) VALUES ($1) RETURNING x, xmin::text::bigint AS tx"


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    made = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    assert made is not None
    await made.execute("CREATE TABLE gc_probe (x int PRIMARY KEY CHECK (x >= 0))")
    try:
        yield made
    finally:
        await made.close()


def batches(outcome: str) -> float:
    return metrics.registry.get_sample_value("slots_book_batches_total", {"outcome": outcome}) or 0


def _batched() -> tuple[float, float]:
    """(statements, batches) sent so far by this process."""
    found = metrics.registry.get_sample_value
    return found("slots_book_batch_size_sum") or 0, found("slots_book_batch_size_count") or 0


async def test_callers_of_one_batch_get_their_own_rows_from_one_transaction(
    pool: asyncpg.Pool,
) -> None:
    commit = GroupCommit(pool, _PROBE, max_batch=64, in_flight=1)
    xs = list(range(50))
    random.shuffle(xs)  # the batch runs in lock order, the answers go back to their callers
    rows = await asyncio.gather(*(commit.decide((x % 7, x), (x,)) for x in xs))
    assert [row["x"] for row in rows if row is not None] == xs
    stored = await pool.fetch("SELECT x, xmin::text::bigint AS tx FROM gc_probe")
    assert sorted(r["x"] for r in stored) == sorted(xs)
    # asked in one turn of the loop, they were committed by one transaction
    assert len({r["tx"] for r in stored}) == 1


async def test_a_statement_that_raises_rolls_back_its_whole_batch(pool: asyncpg.Pool) -> None:
    commit = GroupCommit(pool, _PROBE, max_batch=64, in_flight=1)
    before = batches("rolled_back")
    rows = await asyncio.gather(*(commit.decide((x,), (x,)) for x in [3, 1, -1, 2]))
    assert rows == [None, None, None, None]  # each is to be decided alone
    assert await pool.fetchval("SELECT count(*) FROM gc_probe") == 0
    assert batches("rolled_back") == before + 1


async def test_a_parameter_that_cannot_be_sent_sends_its_batch_to_decide_alone(
    pool: asyncpg.Pool,
) -> None:
    commit = GroupCommit(pool, _PROBE, max_batch=64, in_flight=1)
    rows = await asyncio.gather(*(commit.decide((0,), (x,)) for x in [1, "not a number", 2]))
    assert rows == [None, None, None]
    assert await pool.fetchval("SELECT count(*) FROM gc_probe") == 0


async def test_a_batch_with_no_answer_fails_every_caller_and_commits_nothing(
    settings: Settings,
) -> None:
    slow = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=1, command_timeout=0.3
    )
    assert slow is not None
    try:
        await slow.execute("CREATE TABLE gc_probe (x int PRIMARY KEY)")
        query = "INSERT INTO gc_probe SELECT $1::int FROM pg_sleep(2) RETURNING x"
        commit = GroupCommit(slow, query, max_batch=64, in_flight=1)
        answers = await asyncio.gather(
            *(commit.decide((x,), (x,)) for x in range(3)), return_exceptions=True
        )
        assert all(isinstance(a, errors.Unavailable) for a in answers), answers
        await asyncio.sleep(2)  # the server went on until it saw the connection gone
        assert await slow.fetchval("SELECT count(*) FROM gc_probe") == 0
    finally:
        await slow.close()


async def test_a_caller_gone_before_its_batch_was_sent_is_left_out(pool: asyncpg.Pool) -> None:
    query = "INSERT INTO gc_probe SELECT $1::int FROM pg_sleep(0.3) RETURNING x"
    commit = GroupCommit(pool, query, max_batch=64, in_flight=1)
    first = asyncio.ensure_future(commit.decide((1,), (1,)))
    await asyncio.sleep(0.1)  # the first batch is in Postgres
    gone = asyncio.ensure_future(commit.decide((2,), (2,)))
    kept = asyncio.ensure_future(commit.decide((3,), (3,)))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first is not None
    assert await kept is not None
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert [r["x"] for r in await pool.fetch("SELECT x FROM gc_probe ORDER BY x")] == [1, 3]


async def test_a_crowd_without_redis_is_decided_in_batches_and_sells_exactly(
    settings: Settings,
) -> None:
    rt = await Runtime.start(replace(settings, redis_url=""))
    try:
        await prepare_catalog(rt, NOW)
        statements, sent = _batched()
        outcomes = await asyncio.gather(*(_outcome(rt, k) for k in range(120)))
        assert outcomes.count("created") == 3
        assert outcomes.count("slot_full") == 117
        assert await durable(rt) == (3, 3, 3)
        now_statements, now_sent = _batched()
        more_statements, more_batches = now_statements - statements, now_sent - sent
        assert more_statements >= 120
        assert more_batches < more_statements / 4  # they shared transactions
    finally:
        await rt.close()


async def test_a_race_an_index_caught_gives_each_booking_its_answer_alone(
    settings: Settings,
) -> None:
    """Another transaction binds the phone person 0 gives, not committed yet: the batch with
    person 0's booking waits on the phone's unique index, then raises when it commits. The
    whole batch is rolled back and decided again, each booking alone: person 0 is refused
    (the phone is another's now), the others booked."""
    rt = await Runtime.start(replace(settings, redis_url="", book_batch_in_flight=1))
    blocker = await asyncpg.connect(settings.database_url)
    try:
        await prepare_catalog(rt, NOW)
        key = settings.pii_key.get()
        phone = people.phone_hmac(key, request(0).person.phone or "")
        binding = blocker.transaction()
        await binding.start()
        await blocker.execute(
            "INSERT INTO people (id_hmac, id_type, id_masked, phone_hmac, created_at)"
            " VALUES ($1, 'passport', 'X***1', $2, now())",
            people.identity_hmac(key, "passport", "X0000001"),
            phone,
        )
        before = batches("rolled_back")
        asked = [request(0), *(_at(request(k), "09:30") for k in (1, 2, 3))]
        answers = asyncio.gather(*(_outcome(rt, 0, body) for body in asked))
        await _until_waiting_on_a_lock(blocker)
        await binding.commit()
        assert await answers == ["phone_bound_to_other_person", "created", "created", "created"]
        assert batches("rolled_back") == before + 1
        assert await durable(rt) == (0, 0, 3)
        assert await durable(rt, "09:30") == (3, 3, 3)
    finally:
        await blocker.close()
        await rt.close()


def _at(body: BookingIn, start: str) -> BookingIn:
    return msgspec.structs.replace(body, start=start)


async def _outcome(rt: Runtime, k: int, body: BookingIn | None = None) -> str:
    try:
        await booking.book(rt, body or request(k), NOW, None)
    except errors.DomainError as exc:
        return exc.code
    return "created"


async def _until_waiting_on_a_lock(conn: asyncpg.Connection) -> None:
    for _ in range(200):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no statement waited for the uncommitted phone")
