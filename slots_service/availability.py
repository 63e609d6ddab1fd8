"""Availability: the open days of the horizon with their windows and seats remaining, as
Postgres counts them (the gate's counters are never shown).

An office's answer is kept in the process for at most FRESH_S (0.5 s) from the moment its
query began, so a crowd of readers costs one query per office, days and half second. Every
answer therefore shows every booking, cancellation and capacity change that committed at
least FRESH_S before it was given, whatever process made it; a write answered by this
process drops every kept answer at once (`changed`), so its caller reads it back at once.
The HTTP layer keeps the bytes each fresh answer went out as (`keep_encoded`): an identical
request (path, query, Authorization) while it is fresh gets them again (`encoded`), encoded
once per change, not per read.
"""

from __future__ import annotations

import contextvars
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import NamedTuple

from . import errors
from .catalog import Catalog, Office
from .db import connection, queries
from .horizon import next_to_open
from .models import (
    DayOut,
    OfficeAvailability,
    OfficeDayTotal,
    ServiceAvailability,
    ServiceOfficeAvailability,
    WindowOut,
)
from .render import hhmm
from .runtime import Runtime

FRESH_S = 0.5  # how long an answer is kept: the most a committed change can be unseen
_KEPT_MAX = 1024  # answers of whole horizons are ~35 kB of objects each
_ENCODED_MAX = 1024  # and ~30 kB of bytes: each dict at most ~30-35 MB


class _Kept(NamedTuple):
    began: float  # time.monotonic() when its query began
    generation: int  # of this process's writes
    office: Office  # the catalog's objects it was made from (a reload makes new ones)
    offered: object
    now: datetime  # the service clock it was made at
    until: datetime  # the first window's start or the horizon's next move: then it differs
    answer: OfficeAvailability

    def fresh(self, now: datetime, at: float) -> bool:
        """Still the answer at service time `now`, monotonic time `at`."""
        return (
            at - self.began <= FRESH_S
            and self.generation == _generation[0]
            and self.now <= now < self.until
        )


class Encoded(NamedTuple):
    """A kept answer as it went out: what a repeat of the same request is sent."""

    kept: _Kept
    catalog: Catalog  # the process's copy it was made from (another app in this process has
    catalog_version: int  # its own), at this version
    headers: list[tuple[bytes, bytes]]
    body: bytes


_kept: dict[tuple[str, str, date, date, bool], _Kept] = {}
# By (path, query string, Authorization): the same request of the same key, answered 200.
_encoded: dict[tuple[str, bytes, bytes], Encoded] = {}
_generation = [0]
# The kept answers a request was given, for the HTTP layer to keep its bytes.
serving: contextvars.ContextVar[list[_Kept] | None] = contextvars.ContextVar(
    "serving", default=None
)


def changed() -> None:
    """A write was answered in this process: no kept answer is shown again."""
    _generation[0] += 1
    _kept.clear()
    _encoded.clear()


def encoded(key: tuple[str, bytes, bytes], now: datetime, catalog: Catalog) -> bytes | None:
    """Nothing, or the body of the fresh answer of an identical request (its headers in
    `encoded_headers`): encoded once per change, not per read."""
    found = _encoded.get(key)
    if found is None or found.catalog is not catalog or found.catalog_version != catalog.version:
        return None
    return found.body if found.kept.fresh(now, time.monotonic()) else None


def encoded_headers(key: tuple[str, bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return _encoded[key].headers


def keep_encoded(
    key: tuple[str, bytes, bytes],
    kept: _Kept,
    catalog: Catalog,
    catalog_version: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    """The bytes of `kept` as they went out, for identical requests while it is fresh."""
    if kept.generation != _generation[0] or catalog.version != catalog_version:
        return
    if len(_encoded) >= _ENCODED_MAX:
        _encoded.clear()
    _encoded[key] = Encoded(kept, catalog, catalog_version, headers, body)


def _span(first: date, last: date, from_: date | None, to: date | None) -> tuple[date, date]:
    """The asked range cut to the horizon (empty when lo > hi)."""
    if from_ is not None and to is not None and from_ > to:
        raise errors.InvalidRequest("from must not be after to")
    return max(first, from_ or first), min(last, to or last)


async def _opened_span(
    rt: Runtime, office: Office, now: datetime, from_: date | None, to: date | None
) -> tuple[date, date]:
    first, last = await rt.days.ensure_horizon(office, now)
    return _span(first, last, from_, to)


async def of_office(
    rt: Runtime,
    office_id: str,
    service_id: str,
    from_: date | None,
    to: date | None,
    available_only: bool,
) -> OfficeAvailability:
    office = await rt.catalog.office(office_id)
    offered = await rt.catalog.service(service_id)
    if offered.id not in office.services:
        raise errors.NotBookable(f"service {offered.id!r} is not offered at {office.id!r}")
    now = await rt.clock.now()
    lo, hi = await _opened_span(rt, office, now, from_, to)
    key = (office.id, offered.id, lo, hi, available_only)
    kept = _kept.get(key)
    began = time.monotonic()
    given = serving.get()
    if (
        kept is not None
        and kept.fresh(now, began)
        and kept.office is office
        and kept.offered is offered
    ):
        if given is not None:
            given.append(kept)
        return kept.answer
    generation = _generation[0]
    days: dict[date, list[WindowOut]] = {}
    # The horizon moves when its newest day opens, and at local midnight (its first day).
    midnight = datetime.combine(now.astimezone(office.tz).date() + timedelta(days=1), dtime(0))
    until = min(next_to_open(now, office.tz, rt.settings)[1], midnight.replace(tzinfo=office.tz))
    if lo <= hi:
        async with connection(rt.pool) as conn:
            rows = await conn.fetch(queries["availability"], office.id, lo, hi, now)
        if rows:  # ordered by day and start: the first is the next to start
            first = datetime.combine(rows[0]["day"], rows[0]["start_time"], office.tz)
            until = min(until, first)
        for r in rows:
            if available_only and r["remaining"] <= 0:
                continue
            days.setdefault(r["day"], []).append(
                WindowOut(
                    start=hhmm(r["start_time"]),
                    end=hhmm(r["end_time"]),
                    capacity=r["capacity"],
                    remaining=r["remaining"],
                )
            )
    answer = OfficeAvailability(
        office_id=office.id,
        service_id=offered.id,
        timezone=office.timezone,
        days=[DayOut(date=d.isoformat(), windows=w) for d, w in days.items()],
    )
    if generation == _generation[0]:
        if len(_kept) >= _KEPT_MAX:
            _kept.clear()
        _kept[key] = made = _Kept(began, generation, office, offered, now, until, answer)
        if given is not None:
            given.append(made)
    return answer


async def of_service(
    rt: Runtime, service_id: str, from_: date | None, to: date | None
) -> ServiceAvailability:
    """For each office offering the service, each open day's total seats remaining."""
    offered = await rt.catalog.service(service_id)
    now = await rt.clock.now()
    result = []
    for office in await rt.catalog.offices():
        if offered.id not in office.services:
            continue
        lo, hi = await _opened_span(rt, office, now, from_, to)
        totals: list[OfficeDayTotal] = []
        if lo <= hi:
            async with connection(rt.pool) as conn:
                rows = await conn.fetch(queries["availability_by_day"], [office.id], lo, hi, now)
            totals = [
                OfficeDayTotal(date=r["day"].isoformat(), remaining=r["remaining"]) for r in rows
            ]
        result.append(
            ServiceOfficeAvailability(
                office_id=office.id, name=office.name, timezone=office.timezone, days=totals
            )
        )
    return ServiceAvailability(service_id=offered.id, offices=result)
