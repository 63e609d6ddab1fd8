"""Postgres: the pool, named queries, migrations, and driver errors -> domain errors."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Any, TypeVar, cast

import asyncpg
import msgspec

from . import errors

log = logging.getLogger(__name__)
T = TypeVar("T")

_BLOCK = re.compile(r"^-- (name|fragment): ([a-z_]+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{([a-z_]+)\}")
MIGRATION_LOCK = 0x510751  # advisory lock key for `migrate`


def load_queries(text: str) -> dict[str, str]:
    """Split `-- name: x` blocks (procrastinate's style) into {name: sql}; a `-- fragment: x`
    block is included where a query says `{x}`."""
    parts = _BLOCK.split(text)
    blocks = zip(parts[1::3], parts[2::3], parts[3::3], strict=True)
    fragments: dict[str, str] = {}
    named: dict[str, str] = {}
    for kind, name, body in blocks:
        if kind == "fragment":  # included inline: its comments stay in queries.sql
            lines = (line for line in body.splitlines() if not line.startswith("--"))
            fragments[name] = "\n".join(lines).strip()
        else:
            named[name] = body.strip()

    def include(match: re.Match[str]) -> str:
        return fragments.get(match.group(1), match.group(0))

    return {name: _INCLUDE.sub(include, body) for name, body in named.items()}


def _all_queries() -> dict[str, str]:
    """Every `sql/*.sql` file's queries (queries.sql first: its fragments serve them all)."""
    folder = resources.files(__package__).joinpath("sql")
    files = sorted(
        (f for f in folder.iterdir() if f.name.endswith(".sql")),
        key=lambda f: (f.name != "queries.sql", f.name),
    )
    return load_queries("\n\n".join(f.read_text() for f in files))


queries = _all_queries()


def _encode_jsonb(value: Any) -> bytes:
    body = value if isinstance(value, bytes) else msgspec.json.encode(value)
    return b"\x01" + body


def _decode_jsonb(data: bytes) -> Any:
    return msgspec.json.decode(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection going back to the pool keeps its session: pooled connections hold no
    session state (no SET, LISTEN, advisory lock or cursor: those live on connections of
    their own), and asyncpg still rolls back any transaction left open. asyncpg's default
    reset would cost a round trip (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`) on every release."""


async def create_pool(
    url: str, size: int, warm: Sequence[tuple[str, Sequence[object]]] = (), open_at_least: int = 2
) -> asyncpg.Pool:
    """The pool, `open_at_least` of its connections always open (asyncpg closes the others
    after a minute unused); each new connection runs each statement of `warm` once with its
    arguments (ones that change nothing). A connection's first run of a statement prepares it
    and reads its tables' catalog entries into the backend: for `book`, a crowd's first batch
    spent most of its ~270 ms so (slower machine), so a new connection pays that before it is
    used, not in the first crowd it meets (a pod started for the 00:00 release)."""

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        for query, args in warm:
            await conn.fetch(query, *args)

    pool = await asyncpg.create_pool(
        url,
        min_size=min(open_at_least, size),
        max_size=size,
        init=init,
        reset=_keep_session,
        command_timeout=30,
        max_inactive_connection_lifetime=60,
    )
    assert pool is not None
    return pool


# Unique / check constraints whose violation is a rule of the service, not a bug.
_CONSTRAINT_ERRORS: dict[str, Callable[[], errors.DomainError]] = {
    "bookings_daily_limit": errors.DailyLimitReached,
    "people_phone_bound": errors.PhoneBoundToOtherPerson,
    "windows_not_oversold": errors.SlotFull,
    # which booking is found by the rule that meets it (booking.py)
    "bookings_one_active_per_service": lambda: errors.ActiveBookingExists(None),
    # which entry is found by the caller (entries.py, waitlist.py)
    "entry_identities_pkey": lambda: errors.EntryExists(None),
    "waitlist_identities_pkey": lambda: errors.WaitlistEntryExists(None),
}

# The server ended the connection: PostgresErrors, but no refusal of a statement's.
CONNECTION_ENDED = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,  # the server stops: it ends our connections
    asyncpg.exceptions.CrashShutdownError,
)
_UNAVAILABLE = (
    OSError,
    *CONNECTION_ENDED,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    TimeoutError,
)
# Values the models let through but Postgres cannot hold: the last line of defence behind the
# text rules of models.py, so that no input answers 500 (nothing was stored: the statement
# failed whole).
_UNSTORABLE = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
    asyncpg.exceptions.StringDataRightTruncationError,
    asyncpg.exceptions.NumericValueOutOfRangeError,
    asyncpg.exceptions.DatetimeFieldOverflowError,
)


def translate(exc: BaseException) -> errors.DomainError | None:
    """A driver error as the domain error it means, or None when it is a real fault."""
    if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
        name = getattr(exc, "constraint_name", None) or ""
        factory = _CONSTRAINT_ERRORS.get(name)
        return factory() if factory is not None else None
    if isinstance(exc, _UNSTORABLE):
        return errors.InvalidRequest("the request holds a value that cannot be stored")
    if isinstance(exc, _UNAVAILABLE):
        return errors.Unavailable()
    return None


async def one(conn: asyncpg.Connection, name: str, *args: object) -> asyncpg.Record:
    """The one row a named query returns (it always returns one: an INSERT/UPDATE's RETURNING
    of a row known to exist)."""
    row: asyncpg.Record | None = await conn.fetchrow(queries[name], *args)
    if row is None:
        raise AssertionError(f"{name} returned no row")
    return row


_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


@contextmanager
def translated() -> Iterator[None]:
    """Driver errors leave as the domain errors they mean; real faults as they are."""
    try:
        yield
    except errors.DomainError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; driver errors leave as domain errors."""
    with translated():
        async with pool.acquire() as conn:
            yield cast(asyncpg.Connection, conn)


async def in_transaction(
    pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]], attempts: int = 3
) -> T:
    """Run `work` in one transaction, retried on deadlock or serialization failure."""
    for attempt in range(attempts):
        try:
            async with connection(pool) as conn, conn.transaction():
                return await work(conn)
        except _RETRYABLE:
            if attempt == attempts - 1:
                raise
            log.warning("transaction retried after a deadlock/serialization failure")
    raise AssertionError("unreachable")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every file in sql/migrations, in order."""
    found = []
    for entry in resources.files(__package__).joinpath("sql/migrations").iterdir():
        match = re.match(r"^(\d+)_([a-z0-9_]+)\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


async def migrate(url: str) -> list[str]:
    """Apply pending migrations under an advisory lock; returns the names applied."""
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute(queries["lock"], MIGRATION_LOCK)
        await conn.execute(queries["migrations_table"])
        done = {r["version"] for r in await conn.fetch(queries["migrations_done"])}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(queries["migration_applied"], version, name)
            applied.append(name)
            log.info("applied migration %s", name)
    finally:
        try:
            await conn.execute(queries["unlock"], MIGRATION_LOCK)
        finally:
            await conn.close()
    return applied
