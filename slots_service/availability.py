"""Availability: the open days of the horizon with their windows and seats remaining, as
Postgres counts them (the gate's counters are never shown)."""

from __future__ import annotations

from datetime import date, datetime

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
    days: dict[date, list[WindowOut]] = {}
    if lo <= hi:
        async with connection(rt.pool) as conn:
            rows = await conn.fetch(queries["availability"], office.id, lo, hi, now)
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
    return OfficeAvailability(
        office_id=office.id,
        service_id=offered.id,
        timezone=office.timezone,
        days=[DayOut(date=d.isoformat(), windows=w) for d, w in days.items()],
    )


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
