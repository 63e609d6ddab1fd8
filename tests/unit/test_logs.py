"""What the log configuration lets through."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from slots_service import logs


@pytest.fixture
def configured() -> Iterator[None]:
    names = ("apscheduler.executors", "granian.access", "slots_service.access")
    before = {name: logging.getLogger(name).level for name in names}
    access_handlers = list(logs.access.handlers)
    access_propagates = logs.access.propagate
    logs.configure("info")
    try:
        yield
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
        logs.access.handlers = access_handlers
        logs.access.propagate = access_propagates


@pytest.mark.usefixtures("configured")
def test_each_scheduler_run_writes_no_line_but_its_warnings_do() -> None:
    executor = logging.getLogger("apscheduler.executors.default")  # "Running job ..." x2
    assert not executor.isEnabledFor(logging.INFO)
    assert executor.isEnabledFor(logging.WARNING)  # a missed run, a job that raised


@pytest.mark.usefixtures("configured")
def test_request_lines_leave_after_their_loop_turn_in_order_and_at_once_without_a_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = logs._direct[0]
    assert handler is not None
    stream = io.StringIO()
    monkeypatch.setattr(handler, "stream", stream)
    monkeypatch.setattr(logs.access, "handlers", [handler])  # without pytest's capture

    def line(rid: str) -> None:
        logs.log_request("POST", "/v1/bookings", 201, 0.001, rid, None)

    def written() -> list[str]:
        return [json.loads(text)["request_id"] for text in stream.getvalue().splitlines()]

    async def one_turn(first: int) -> list[str]:
        for k in range(first, first + 3):
            line(f"r{k}")
        before = written()
        await asyncio.sleep(0)
        return before

    assert asyncio.run(one_turn(0)) == []
    assert written() == ["r0", "r1", "r2"]
    assert asyncio.run(one_turn(3)) == ["r0", "r1", "r2"]  # a new loop flushes its own
    assert written() == [f"r{k}" for k in range(6)]
    line("r6")  # no loop runs: written at once
    assert written()[-1] == "r6"
