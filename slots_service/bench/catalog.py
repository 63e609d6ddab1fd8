"""The catalog `slots-service bench` books into, made through the admin API: a big office
(every window 10 000 seats, the whole horizon) and a flash office (one small window); and the
checks, over HTTP, that the seats taken there are exactly the 201s answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from .report import Scenario

BIG_CAPACITY = 10_000  # the largest window capacity the API accepts
SERVICE_ID = "bench-service"
TIMEZONE = "Asia/Shanghai"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Catalog:
    big: str
    flash: str
    slots: list[tuple[str, str]]  # every (date, start) of the big office
    days: list[str]
    flash_slot: tuple[str, str]
    flash_capacity: int

    @property
    def windows_per_day(self) -> int:
        return len(self.slots) // max(len(self.days), 1)


def make_catalog(http: httpx.Client, flash_capacity: int, suffix: str) -> Catalog:
    """The bench service and its two offices (ids ending in `suffix`), their horizon open."""
    big, flash = f"bench-big{suffix}", f"bench-flash{suffix}"
    _call(
        http,
        "PUT",
        f"/v1/services/{SERVICE_ID}",
        {"name": "Bench service", "cancel_cutoff": {"kind": "none"}, "max_party_size": 1},
    )
    for office, hours in (
        (big, {"start": "08:00", "end": "20:00", "capacity": BIG_CAPACITY}),
        (flash, {"start": "10:00", "end": "10:30", "capacity": flash_capacity}),
    ):
        _call(
            http,
            "PUT",
            f"/v1/offices/{office}",
            {
                "name": f"Bench office {office}",
                "timezone": TIMEZONE,
                "services": [SERVICE_ID],
                "window_minutes": 30,
                "hours": {day: [hours] for day in WEEKDAYS},
            },
        )
    _call(http, "POST", "/v1/admin/jobs/open-horizon")
    _call(http, "POST", "/v1/admin/jobs/reconcile")
    days = _days(http, big)
    slots = [(d["date"], w["start"]) for d in days for w in d["windows"]]
    first = _days(http, flash)[0]
    flash_slot = (first["date"], first["windows"][0]["start"])
    found = first["windows"][0]["remaining"]
    if not slots or found != flash_capacity:
        raise RuntimeError(f"unexpected catalog: {len(slots)} windows, flash {found}")
    return Catalog(big, flash, slots, [d["date"] for d in days], flash_slot, flash_capacity)


def check_flash(http: httpx.Client, catalog: Catalog, scenario: Scenario) -> dict[str, Any]:
    """The flash window sold exactly its capacity: no more (oversold), no less."""
    day, start = catalog.flash_slot
    days = _days(http, catalog.flash, day)
    window = next(w for d in days for w in d["windows"] if w["start"] == start)
    created = int(scenario.result["created_all"])
    booked = window["capacity"] - window["remaining"]
    oversold = created > catalog.flash_capacity or booked > window["capacity"]
    exact = created == catalog.flash_capacity == booked
    verdict = "no" if not oversold else "YES"
    scenario.note = (
        f"created {created} of {catalog.flash_capacity} seats, Postgres says booked "
        f"{booked}, remaining {window['remaining']}: oversold: {verdict}"
        + ("" if exact or oversold else " (UNDERSOLD: seats left unsold)")
    )
    sold_out = scenario.result.get("last_201_ms")
    if sold_out is not None:
        scenario.note += f"; sold out {sold_out:.0f} ms after the first request"
    return {
        "flash_created": created,
        "flash_capacity": catalog.flash_capacity,
        "flash_booked_in_db": booked,
        "flash_oversold": oversold,
        "flash_exact": exact,
    }


def check_big(http: httpx.Client, catalog: Catalog, created: int, scenario: Scenario) -> bool:
    """Every 201 so far (`created`) is a seat taken in Postgres, and nothing more."""
    days = _days(http, catalog.big)
    booked = int(sum(w["capacity"] - w["remaining"] for d in days for w in d["windows"]))
    same = booked == created
    abandoned = int(scenario.result["abandoned"])
    extra = f", {abandoned} requests abandoned in flight" if abandoned else ""
    scenario.note = (
        f"201 answers so far {created}, seats taken in Postgres {booked}: "
        f"{'consistent' if same else 'MISMATCH'}{extra}"
    )
    return same


def _call(
    http: httpx.Client,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, str] | None = None,
) -> Any:
    """The JSON answer of one call; anything but 2xx fails."""
    r = http.request(method, path, json=body, params=params)
    if r.status_code >= 300:
        raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
    return r.json()


def _days(http: httpx.Client, office: str, day: str | None = None) -> list[dict[str, Any]]:
    """The office's windows of the bench service, day by day: the whole horizon, or `day`."""
    params = {"service": SERVICE_ID} | ({"from": day, "to": day} if day else {})
    days: list[dict[str, Any]] = _call(
        http, "GET", f"/v1/offices/{office}/availability", params=params
    )["days"]
    return days
