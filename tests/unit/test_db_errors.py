"""What a driver error means to a caller (`db.translate`): Postgres gone or going is the
service's 503 `unavailable`, never a 500."""

from __future__ import annotations

import asyncpg
import pytest

from slots_service import errors
from slots_service.db import translate

_GONE = [
    asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another"),
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.InterfaceError("connection has been released back to the pool"),
    ConnectionRefusedError(111, "Connection refused"),
]


@pytest.mark.parametrize("exc", _GONE, ids=lambda exc: type(exc).__name__)
def test_postgres_gone_or_stopping_is_unavailable(exc: Exception) -> None:
    assert isinstance(translate(exc), errors.Unavailable)


def test_a_violation_of_no_rule_is_a_fault_not_a_refusal() -> None:
    assert translate(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
