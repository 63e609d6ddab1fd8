"""The gate's pipelined connection (resp.py): a crowd of takes at once over one connection
sells exactly the seats; a Redis that forgot the script, or dropped the connection, is handled
as redis-py would (the script loaded again; the breaker, then a new connection)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from slots_service import resp
from slots_service.counters import Counters, Gate

DAY = date(2026, 11, 25)
TTL = 2_000_000_000


def test_replies_are_read_whole_or_not_at_all() -> None:
    assert resp.parse(b":-3\r\n") == (-3, 5)
    assert resp.parse(b"$7\r\nmissing\r\n:1\r\n") == (b"missing", 13)
    assert resp.parse(b"$7\r\nmiss") is None
    assert resp.parse(b":12") is None
    assert resp.parse(b"+OK\r\n") == (b"OK", 5)
    error = resp.parse(b"-NOSCRIPT No matching script\r\n")
    assert error is not None
    assert isinstance(error[0], ResponseError)
    assert str(error[0]).startswith("NOSCRIPT")
    with pytest.raises(resp.ProtocolFault):
        resp.parse(b"*2\r\n")
    assert resp.command("GET", "k", 1) == b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\n1\r\n"


def test_only_plain_redis_urls_take_the_pipelined_connection() -> None:
    assert resp.fast_target("redis://127.0.0.1:6390/2") == ("127.0.0.1", 6390, None, None, 2)
    assert resp.fast_target("redis://u:p%40ss@h/0") == ("h", 6379, "u", "p@ss", 0)
    assert resp.fast_target("rediss://h:6379/0") is None
    assert resp.fast_target("unix:///tmp/redis.sock") is None
    assert resp.fast_target("redis://h:6379/0?protocol=3") is None


async def test_a_crowd_over_one_connection_takes_exactly_the_seats(redis_url: str) -> None:
    counters = Counters(redis_url, timeout_s=2.0)
    assert counters._gate is not None
    try:
        await counters.fill("o", DAY, {"09:00": 37}, TTL, replace=False)
        answers = await asyncio.gather(
            *(counters.take("o", DAY, "09:00", 1, (f"p{i}", 60, 60)) for i in range(500))
        )
        assert Counter(answers) == {Gate.TAKEN: 37, Gate.FULL: 463}
        assert await counters.take("o", DAY, "10:00", 1) is Gate.NO_WINDOW
        assert await counters.take("o", date(2026, 11, 26), "09:00", 1) is Gate.MISSING
    finally:
        await counters.close()


async def test_the_calls_of_one_turn_of_the_loop_reach_redis_in_one_read(redis_url: str) -> None:
    """A crowd's gate calls cost Redis (and the API's sends) one read per turn of the loop,
    not one per call: Valkey counts the reads it processed."""
    gate = resp.GateConnection(*_target(redis_url), timeout_s=2.0)
    stats = aioredis.from_url(redis_url)
    try:
        assert await gate.call(resp.command("PING")) == b"PONG"  # connected
        await stats.delete("t:n")
        before = await _reads(stats)
        replies = await asyncio.gather(
            *(gate.call(resp.command("INCR", "t:n")) for _ in range(200))
        )
        reads = await _reads(stats) - before
        assert replies == list(range(1, 201))  # each call its own reply, in order
        assert reads <= 10, reads  # a send per call gave ~100 reads
    finally:
        gate.close()
        await stats.aclose()


async def test_a_crowd_on_a_connection_not_open_yet_goes_on_together_once_it_is(
    redis_url: str,
) -> None:
    """The first crowd of a process (or the first after Redis came back) opens one connection,
    and every caller that waited for it is answered in the same few turns of the event loop,
    not one turn each (a lock handed from waiter to waiter kept the last ones of a real crowd
    seconds behind the rest)."""
    gate = resp.GateConnection(*_target(redis_url), timeout_s=2.0)
    stats = aioredis.from_url(redis_url)
    turns = 0
    answered_at: list[int] = []

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def ping() -> object:
        reply = await gate.call(resp.command("PING"))
        answered_at.append(turns)
        return reply

    await stats.ping()
    before = int((await stats.info("stats"))["total_connections_received"])
    ticker = asyncio.get_running_loop().create_task(count_turns())
    try:
        replies = await asyncio.gather(*(ping() for _ in range(500)))
    finally:
        ticker.cancel()
        gate.close()
    try:
        opened = int((await stats.info("stats"))["total_connections_received"]) - before
    finally:
        await stats.aclose()
    assert replies == [b"PONG"] * 500
    assert opened == 1
    assert max(answered_at) - min(answered_at) <= 5, (min(answered_at), max(answered_at))


def _target(url: str) -> tuple[str, int, str | None, str | None, int]:
    target = resp.fast_target(url)
    assert target is not None
    return target


async def _reads(client: aioredis.Redis) -> int:
    info = await client.info("stats")
    return int(info["total_reads_processed"])


async def test_a_redis_that_forgot_the_script_or_the_connection_still_gates(
    redis_url: str,
) -> None:
    counters = Counters(redis_url, timeout_s=2.0)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await counters.fill("o", DAY, {"09:00": 3}, TTL, replace=False)
        assert await counters.take("o", DAY, "09:00", 1) is Gate.TAKEN
        await admin.script_flush()  # as after a restart: NOSCRIPT, then loaded again
        assert await counters.take("o", DAY, "09:00", 1) is Gate.TAKEN
        await admin.client_kill_filter(_type="normal", skipme=True)  # every connection
        await asyncio.sleep(0.05)
        # The lost connection opens the breaker, or is replaced at once: never a wrong answer.
        assert await counters.take("o", DAY, "09:00", 1) in (Gate.TAKEN, Gate.BYPASSED)
        counters._down_until = 0.0  # the breaker's 2 s, skipped
        found = await counters.take("o", DAY, "09:00", 1)
        assert found in (Gate.TAKEN, Gate.FULL)
        assert int(await admin.hget("slots:{o:2026-11-25}", "09:00") or -1) == 0
    finally:
        await admin.aclose()
        await counters.close()
