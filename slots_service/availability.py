"""Availability: the open days of the horizon with their windows and seats remaining, as
Postgres counts them (the gate's counters are never shown).

An office's answer is kept in the process for at most FRESH_S (0.5 s) from the moment its
query began, so a crowd of readers costs one query per office, days and half second. Every
answer therefore shows every booking, cancellation and capacity change that committed at
least FRESH_S before it was given, whatever process made it; a write answered by this
process drops every kept answer at once (`changed`), so its caller reads it back at once.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import NamedTuple

from . import errors
from .catalog import Office
from .db import connection, queries
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
_KEPT_MAX = 4096


class _Kept(NamedTuple):
    began: float  # time.monotonic() when its query began
    generation: int  # of this process's writes
    office: Office  # the catalog's objects it was made from (a reload makes new ones)
    offered: object
    now: datetime  # the service clock it was made at
    until: datetime | None  # the first window's start: from then on the answer differs
    answer: OfficeAvailability


_kept: dict[tuple[str, str, date, date, bool], _Kept] = {}
_generation = [0]


def changed() -> None:
    """A write was answered in this process: no kept answer is shown again."""
    _generation[0] += 1
    _kept.clear()


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
    if (
        kept is not None
        and began - kept.began <= FRESH_S
        and kept.generation == _generation[0]
        and kept.office is office
        and kept.offered is offered
        and kept.now <= now
        and (kept.until is None or now < kept.until)
    ):
        return kept.answer
    generation = _generation[0]
    days: dict[date, list[WindowOut]] = {}
    until: datetime | None = None
    if lo <= hi:
        async with connection(rt.pool) as conn:
            rows = await conn.fetch(queries["availability"], office.id, lo, hi, now)
        if rows:  # ordered by day and start: the first is the next to start
            until = datetime.combine(rows[0]["day"], rows[0]["start_time"], office.tz)
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
        _kept[key] = _Kept(began, generation, office, offered, now, until, answer)
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
