"""The shared test clock under a crowd: callers that arrive together share one read, and every
caller sees each `set` committed before it asked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from slots_service.clock import TestClock
from slots_service.runtime import Runtime


async def test_a_crowd_shares_reads_and_never_misses_a_set(rt: Runtime) -> None:
    clock = rt.clock
    assert isinstance(clock, TestClock)
    reads = 0
    read = clock._read

    async def counted() -> datetime:
        nonlocal reads
        reads += 1
        return await read()

    clock._read = counted  # type: ignore[method-assign]
    start = datetime(2026, 12, 3, 15, 59, 59, tzinfo=UTC)
    await clock.set(start)
    found = await asyncio.gather(*(clock.now() for _ in range(500)))
    assert set(found) == {start}
    assert reads <= 3  # not one each
    for step in range(1, 20):  # each set is seen by the next read, in whichever batch
        instant = start + timedelta(seconds=step)
        await clock.set(instant)
        after = await asyncio.gather(*(clock.now() for _ in range(20)))
        assert set(after) == {instant}
