"""The gate's circuit breaker: a refused connection bypasses Redis at once, slow answers only
when they keep coming; a healthy Redis closes it again."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
import redis.asyncio as aioredis

from slots_service import errors
from slots_service.counters import Counters, Gate, day_key
from slots_service.devservers import free_port

DAY = date(2026, 11, 25)


async def test_refused_connection_bypasses_at_once() -> None:
    counters = Counters(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        assert await counters.take("o", DAY, "09:00", 1) is Gate.BYPASSED
        assert not counters._usable()
        assert await counters.over_limit("k", 1, 60) == 0  # rate limits fail open
    finally:
        await counters.close()


async def test_one_slow_answer_does_not_open_the_breaker() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # accept, never answer
        await asyncio.sleep(5)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(silent, "127.0.0.1", port)
    counters = Counters(f"redis://127.0.0.1:{port}/0", timeout_s=0.1)
    try:
        assert await counters.take("o", DAY, "09:00", 1) is Gate.BYPASSED
        assert counters._usable()  # still asked next time
        assert await counters.take("o", DAY, "09:00", 1) is Gate.BYPASSED
        assert counters._usable()
        assert await counters.take("o", DAY, "09:00", 1) is Gate.BYPASSED
        assert not counters._usable()  # three slow answers in a row: bypass for a while
    finally:
        await counters.close()
        server.close()
        await server.wait_closed()


async def test_healthy_redis_answers_the_gate(redis_url: str) -> None:
    counters = Counters(redis_url, timeout_s=0.5)
    try:
        assert await counters.take("o", DAY, "09:00", 1) is Gate.MISSING
        assert await counters.fill("o", DAY, {"09:00": 2}, 2_000_000_000, replace=False) == 1
        assert await counters.take("o", DAY, "09:00", 2) is Gate.TAKEN
        assert await counters.take("o", DAY, "09:00", 1) is Gate.FULL
        await counters.give("o", DAY, "09:00", 1)
        assert await counters.take("o", DAY, "09:00", 1) is Gate.TAKEN
        assert await counters.ping()
    finally:
        await counters.close()


async def test_a_person_trying_too_often_is_rate_limited(redis_url: str) -> None:
    counters = Counters(redis_url, timeout_s=0.5)
    try:
        await counters.fill("o", DAY, {"09:00": 0}, 2_000_000_000, replace=False)
        tries = ("someone", 2, 60)
        assert await counters.take("o", DAY, "09:00", 1, tries) is Gate.FULL
        assert await counters.take("o", DAY, "09:00", 1, tries) is Gate.FULL
        with pytest.raises(errors.RateLimited) as refused:
            await counters.take("o", DAY, "09:00", 1, tries)
        assert 1 <= refused.value.retry_after <= 60
        assert await counters.take("o", DAY, "09:00", 1, ("someone-else", 2, 60)) is Gate.FULL
    finally:
        await counters.close()


async def test_an_idempotency_keys_later_requests_take_nothing_at_the_gate(redis_url: str) -> None:
    """The first request of a key marks it in the gate; its duplicates get DUPLICATE and take
    no seat (the key answers them), whoever else books on."""
    counters = Counters(redis_url, timeout_s=0.5)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await counters.fill("o", DAY, {"09:00": 3}, 2_000_000_000, replace=False)
        once = ("key-one", 10)
        assert await counters.take("o", DAY, "09:00", 1, once=once) is Gate.TAKEN
        for _ in range(5):
            assert await counters.take("o", DAY, "09:00", 1, once=once) is Gate.DUPLICATE
        assert await counters.take("o", DAY, "09:00", 1, once=("key-two", 10)) is Gate.TAKEN
        assert await counters.take("o", DAY, "09:00", 1) is Gate.TAKEN
        assert await counters.take("o", DAY, "09:00", 1, once=("key-three", 10)) is Gate.FULL
        # the mark lives the seconds it was given, counted by Redis's own clock
        assert 1 <= await client.ttl(f"{day_key('o', DAY)}:once:key-one") <= 10
        # a duplicate is an attempt too: the person's limit counts it
        tries = ("someone", 2, 60)
        await counters.take("o", DAY, "09:00", 1, tries, ("key-four", 10))
        await counters.take("o", DAY, "09:00", 1, tries, ("key-four", 10))
        with pytest.raises(errors.RateLimited):
            await counters.take("o", DAY, "09:00", 1, tries, ("key-four", 10))
    finally:
        await client.aclose()
        await counters.close()
