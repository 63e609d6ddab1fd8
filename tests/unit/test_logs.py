"""What the log configuration lets through."""

from __future__ import annotations

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
