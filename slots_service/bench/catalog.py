"""The catalog `slots-service bench` books into, made through the admin API: a big office
(every window 10 000 seats, the whole horizon), a flash office (small windows: one for the
1-worker run, one for the 2-worker run) and a hot office (one window raised to HOT_CAPACITY
seats in Postgres, since the API caps a window at 10 000); and the checks, over HTTP, that the
seats taken there are exactly the 201s answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from .report import Scenario

BIG_CAPACITY = 10_000  # the largest window capacity the API accepts
HOT_CAPACITY = 200_000  # the hot window's, set in Postgres (above what the API accepts)
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
    flash_slot_w2: tuple[str, str] = ("", "")
    hot: str = ""
    hot_slot: tuple[str, str] = ("", "")

    @property
    def windows_per_day(self) -> int:
        return len(self.slots) // max(len(self.days), 1)


def make_catalog(http: httpx.Client, flash_capacity: int, suffix: str) -> Catalog:
    """The bench service and its two offices (ids ending in `suffix`), their horizon open."""
    big, flash, hot = f"bench-big{suffix}", f"bench-flash{suffix}", f"bench-hot{suffix}"
    call(
        http,
        "PUT",
        f"/v1/services/{SERVICE_ID}",
        {"name": "Bench service", "cancel_cutoff": {"kind": "none"}, "max_party_size": 1},
    )
    for office, hours in (
        (big, {"start": "08:00", "end": "20:00", "capacity": BIG_CAPACITY}),
        (flash, {"start": "10:00", "end": "11:00", "capacity": flash_capacity}),
        (hot, {"start": "10:00", "end": "10:30", "capacity": BIG_CAPACITY}),
    ):
        call(
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
    call(http, "POST", "/v1/admin/jobs/open-horizon")
    call(http, "POST", "/v1/admin/jobs/reconcile")
    days = _days(http, big)
    slots = [(d["date"], w["start"]) for d in days for w in d["windows"]]
    first = _days(http, flash)[0]
    flash_slot = (first["date"], first["windows"][0]["start"])
    flash_slot_w2 = (first["date"], first["windows"][1]["start"])
    found = [w["remaining"] for w in first["windows"]]
    if not slots or found != [flash_capacity] * 2:
        raise RuntimeError(f"unexpected catalog: {len(slots)} windows, flash {found}")
    last = _days(http, hot)[-1]  # its window starts furthest ahead
    hot_slot = (last["date"], last["windows"][0]["start"])
    return Catalog(
        big,
        flash,
        slots,
        [d["date"] for d in days],
        flash_slot,
        flash_capacity,
        flash_slot_w2,
        hot,
        hot_slot,
    )


def check_flash(
    http: httpx.Client, catalog: Catalog, scenario: Scenario, slot: tuple[str, str]
) -> dict[str, Any]:
    """The flash window sold exactly its capacity: no more (oversold), no less."""
    day, start = slot
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


def check_hot(http: httpx.Client, catalog: Catalog, scenario: Scenario) -> bool:
    """Every 201 of the hot run is a seat taken in the hot window, and nothing more."""
    day, start = catalog.hot_slot
    days = _days(http, catalog.hot, day)
    window = next(w for d in days for w in d["windows"] if w["start"] == start)
    booked = int(window["capacity"] - window["remaining"])
    created = int(scenario.result["created_all"])
    scenario.note = (
        f"one window of {window['capacity']} seats: 201 answers {created}, seats taken in "
        f"Postgres {booked}: {'consistent' if booked == created else 'MISMATCH'}"
    )
    return booked == created


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


def call(
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
    days: list[dict[str, Any]] = call(
        http, "GET", f"/v1/offices/{office}/availability", params=params
    )["days"]
    return days
