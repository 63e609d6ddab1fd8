"""Group commit: the plain bookings that arrive together, decided in one transaction.

A plain booking (a person alone, not inside another transaction) is one `book` statement
(queries.sql). Under load, many of them wait for Postgres at once, and each paying for its own
transaction (its commit, its WAL flush, its round trip) is much of what Postgres spends on it.
So while a batch is in Postgres, the bookings that arrive queue, and the next batch takes them
all (at most `max_batch`): one `book` statement for all of them (its parameter holds every
booking's values: `encode`, book_params.py), in one transaction, with one commit for all.
At low load a booking finds a free slot and is sent at once, alone. A batch holds bookings of
distinct people and phones (the `distinct` values of each): the statement reads each one's
rules from what other transactions committed, so a second booking of the same person waits for
the next batch.

What each booking keeps:
- **All or nothing, its own rules.** Each booking is decided by the rules it would be alone;
  the seats of a window are shared among the batch's bookings of it in their order, and the
  bookings the statement cannot decide so (`alone`: it might have fit after another's refusal)
  are decided alone after the batch's commit, one after the other in their order.
- **Acknowledged only after the commit.** Every caller's answer waits for the batch's commit.
- **A statement that raises rolls the whole batch back.** This happens on a race that a unique
  index caught, a deadlock, or a value Postgres cannot store. Then every booking of the batch is
  decided alone (`decide` answers None), as if no batch had been tried: nothing of it was
  committed.
- **A lost connection fails every booking of the batch**, as it would have failed each alone.

Each of the `in_flight` slots runs batch after batch on one connection while bookings wait, and
answers a batch's callers as soon as its rows are read, before anything else: under a crowd
every turn of the event loop is long, and each turn a batch waits for (a task to start, a
connection given back) delays every seat of it.

The statement locks a batch's windows in one order (office, day, start), so two batches, of
this process or another, never deadlock on windows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from . import metrics
from .db import CONNECTION_ENDED, translate

# Errors after which nothing of a batch was committed: Postgres refused a statement (the
# implicit transaction was rolled back), or a parameter could not even be encoded (nothing sent:
# asyncpg's client-side DataError, which its SQLSTATE class of the same name hides).
_NOT_COMMITTED = (asyncpg.PostgresError, asyncpg.exceptions._base.DataError)


_Conn = asyncpg.Connection | PoolConnectionProxy
# How one booking is decided alone, in a transaction of its own on the connection given.
Alone = Callable[[Any, Any], Awaitable[asyncpg.Record]]

# A batch's arguments (each booking's, in their order) as the statement's own.
Encode = Callable[[list[Any]], Sequence[object]]


def columns(batch: list[Sequence[object]]) -> list[list[object]]:
    """An array per parameter, an element per booking: $n holds every booking's n-th value."""
    return [list(values) for values in zip(*batch, strict=True)]


class _Waiting(NamedTuple):
    order: tuple[object, ...]  # the lock order: (office_id, day, start)
    distinct: tuple[object, ...]  # values no two bookings of a batch share (person, phone)
    args: Any  # one booking's, as `encode` takes them
    answer: asyncio.Future[asyncpg.Record | None]
    alone: Alone | None  # how it is decided alone, when the statement answers `alone`


class GroupCommit:
    """One statement's batches in one process: at most `in_flight` in Postgres at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        query: str,
        max_batch: int,
        in_flight: int,
        encode: Encode = columns,
    ) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError("a batch holds at least one statement, and one batch runs")
        self._pool = pool
        self._query = query
        self._encode = encode
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._waiting: list[_Waiting] = []
        self._running: set[asyncio.Task[None]] = set()
        self._starting: asyncio.Task[None] | None = None  # a slot that has not taken its batch

    async def decide(
        self,
        order: tuple[object, ...],
        distinct: tuple[object, ...],
        args: object,
        alone: Alone | None = None,
    ) -> asyncpg.Record | None:
        """The statement's row for `args`, committed with whoever else waits now. When the
        statement answered `alone`, the row `alone` gives, decided after the batch's commit in
        the batch's order, one after the other (without `alone`: None). None when the batch
        was rolled back whole (its statement raised): decide it alone."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[asyncpg.Record | None] = loop.create_future()
        self._waiting.append(_Waiting(order, distinct, args, answer, alone))
        self._start()
        return await answer

    def _start(self) -> None:
        """A slot more, if one is free and none is about to take a batch. It takes its batch on
        its first step, on the next turn of the loop: the requests read in this turn join it."""
        if self._starting is None and self._waiting and len(self._running) < self._in_flight:
            self._starting = task = asyncio.get_running_loop().create_task(self._slot())
            self._running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._starting is task:  # cancelled before its first step
            self._starting = None
        self._start()  # bookings that came while it gave its connection back, or cancelled

    def _take(self) -> list[_Waiting]:
        """The next batch: the first waiting, at most `max_batch`, no two sharing a `distinct`
        value (the others wait for the next batch, first in it)."""
        batch: list[_Waiting] = []
        seen: set[object] = set()
        left: list[_Waiting] = []
        for w in self._waiting:
            if len(batch) < self._max_batch and seen.isdisjoint(w.distinct):
                batch.append(w)
                seen.update(w.distinct)
            else:
                left.append(w)
        self._waiting = left
        return batch

    async def _slot(self) -> None:
        """One of the `in_flight` slots: its batch, then, while bookings wait, the next one at
        once, on the same connection. Each turn of the event loop a batch waits for is one that
        a crowd's requests fill, so a batch's answers are set as soon as its rows are read (the
        connection is given back after), and the next batch needs no task or connection of its
        own."""
        self._starting = None
        batch = self._take()
        self._start()  # more waiting than one batch: the next slot takes them
        while batch:
            try:
                async with self._pool.acquire() as conn:
                    while batch and await self._run(conn, batch):
                        batch = self._take()
            except BaseException as exc:  # no connection, or giving it back failed
                _fail(batch, exc)
                if not isinstance(exc, Exception):
                    raise
            # Those that came while the connection was given back, or after one lost under its
            # batch (answered): on a connection of their own.
            batch = self._take()

    async def _run(self, conn: _Conn, batch: list[_Waiting]) -> bool:
        """Decide `batch` on `conn` and answer its callers; False when `conn` is lost."""
        live = [w for w in batch if not w.answer.done()]  # callers gone are left out
        try:
            kept = await self._decide(conn, sorted(live, key=lambda w: w.order)) if live else True
            return kept and not _lost(conn)  # a server that ended it says so in an error
        finally:  # never a caller left waiting, whatever went wrong here (a bug)
            for w in live:
                if not w.answer.done():
                    w.answer.set_exception(AssertionError("the batch gave no row for this"))

    async def _decide(self, conn: _Conn, live: list[_Waiting]) -> bool:
        metrics.book_batch_size.observe(len(live))
        try:
            args = self._encode([w.args for w in live])
        except Exception:  # nothing sent: each is decided alone (one that cannot be, fails alone)
            metrics.child(metrics.book_batches, "rolled_back").inc()
            for w in live:
                _answer(w.answer, None)
            return True
        try:
            rows = await conn.fetch(self._query, *args)
        except _NOT_COMMITTED:  # rolled back whole, or never sent: decided alone
            metrics.child(metrics.book_batches, "rolled_back").inc()
            for w in live:
                _answer(w.answer, None)
            return True
        except BaseException as exc:  # the connection, or this task, is gone: fail them all
            metrics.child(metrics.book_batches, "failed").inc()
            _fail(live, exc)
            if not isinstance(exc, Exception):  # cancelled: this task ends so too
                raise
            return False
        metrics.child(metrics.book_batches, "committed").inc()
        alone: list[_Waiting] = []
        for w, row in zip(live, rows, strict=False):  # a row per booking, in their order
            if not row["alone"]:
                _answer(w.answer, row)
            elif w.alone is None:
                _answer(w.answer, None)
            else:
                alone.append(w)
        return await self._alone(conn, alone)

    async def _alone(self, conn: _Conn, alone: list[_Waiting]) -> bool:
        """The batch's bookings the statement answered `alone`, each in a transaction of its
        own, one after the other in their order; False when `conn` is lost (the one decided
        then fails, the ones after it are answered None: decided alone by their callers)."""
        for i, w in enumerate(alone):
            if _lost(conn):  # ended by the server (its error went to the one before)
                for later in alone[i:]:
                    _answer(later.answer, None)
                return False
            if w.answer.done() or w.alone is None:
                continue
            try:
                row = await w.alone(conn, w.args)
            except BaseException as exc:
                if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, CONNECTION_ENDED):
                    w.answer.set_exception(exc)  # its own refusal: the connection is fine
                    continue
                _fail([w], exc)
                for later in alone[i + 1 :]:
                    _answer(later.answer, None)
                if not isinstance(exc, Exception):
                    raise
                return False
            _answer(w.answer, row)
        return True

    async def finish(self) -> None:
        """At shutdown: the batches in Postgres end before the pool closes."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _lost(conn: _Conn) -> bool:
    """The connection has ended. The pool takes back a connection the server ended under its
    holder, and the holder's proxy then raises on every call, `is_closed` included."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def _answer(answer: asyncio.Future[asyncpg.Record | None], row: asyncpg.Record | None) -> None:
    if not answer.done():  # its caller may have gone (cancelled) meanwhile
        answer.set_result(row)


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    """The callers of `batch` not answered yet get `exc` (as the service's own error)."""
    for w in batch:
        if w.answer.done():
            continue
        if isinstance(exc, Exception):
            w.answer.set_exception(translate(exc) or exc)
        else:
            w.answer.cancel()
