"""Availability: the open days of the horizon, their windows and seats, by office or service."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.steps import book, cancel, problem
from tests.conftest import (
    OFFICE,
    OFFICE_ID,
    SERVICE,
    SERVICE_ID,
    TUESDAY,
    WEDNESDAY,
    booking_body,
    set_clock,
)

URL = f"/v1/offices/{OFFICE_ID}/availability"
# The clock is Monday 2026-11-23 10:00: the horizon is Tue 11-24 .. Mon 12-07, weekdays only.
OPEN_DAYS = [
    "2026-11-24",
    "2026-11-25",
    "2026-11-26",
    "2026-11-27",
    "2026-11-30",
    "2026-12-01",
    "2026-12-02",
    "2026-12-03",
    "2026-12-04",
    "2026-12-07",
]
FULL_DAY = [
    {"start": "09:00", "end": "09:30", "capacity": 3, "remaining": 3},
    {"start": "09:30", "end": "10:00", "capacity": 3, "remaining": 3},
    {"start": "14:00", "end": "14:30", "capacity": 2, "remaining": 2},
    {"start": "14:30", "end": "15:00", "capacity": 2, "remaining": 2},
]


async def office_days(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(URL, params={"service": SERVICE_ID, **params})
    assert response.status_code == 200, response.text
    days: list[dict[str, Any]] = response.json()["days"]
    return days


async def day(client: httpx.AsyncClient, date: str) -> list[dict[str, Any]]:
    found = await office_days(client, **{"from": date, "to": date})
    assert [d["date"] for d in found] == [date]
    windows: list[dict[str, Any]] = found[0]["windows"]
    return windows


async def test_office_availability_has_the_documented_shape(catalog: httpx.AsyncClient) -> None:
    response = await catalog.get(URL, params={"service": SERVICE_ID})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == {
        "office_id": OFFICE_ID,
        "service_id": SERVICE_ID,
        "timezone": "Asia/Shanghai",
        "days": [{"date": d, "windows": FULL_DAY} for d in OPEN_DAYS],
    }


async def test_horizon_is_tomorrow_through_today_plus_14(catalog: httpx.AsyncClient) -> None:
    dates = [d["date"] for d in await office_days(catalog)]
    assert dates[0] == TUESDAY  # today (Monday) is not bookable
    assert dates[-1] == "2026-12-07"  # today + 14
    assert "2026-11-23" not in dates
    for weekend in ("2026-11-28", "2026-11-29", "2026-12-05", "2026-12-06"):
        assert weekend not in dates
    assert dates == sorted(dates)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"from": WEDNESDAY}, OPEN_DAYS[1:]),
        ({"to": WEDNESDAY}, OPEN_DAYS[:2]),
        (
            {"from": WEDNESDAY, "to": "2026-11-30"},
            ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-30"],
        ),
        ({"from": "2026-11-28", "to": "2026-11-29"}, []),
        ({"from": "2026-11-01", "to": "2026-11-24"}, ["2026-11-24"]),
        ({"from": "2026-11-23", "to": "2026-11-23"}, []),
        ({"from": "2026-12-07", "to": "2027-01-31"}, ["2026-12-07"]),
        ({"from": "2026-12-08", "to": "2026-12-31"}, []),
        ({"from": "2026-01-01", "to": "2026-01-31"}, []),
        ({"from": "2026-12-08"}, []),
        ({"to": "2026-11-23"}, []),
        ({"from": WEDNESDAY, "to": WEDNESDAY}, [WEDNESDAY]),
    ],
)
async def test_from_and_to_pick_days_inside_the_horizon(
    catalog: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    days = await office_days(catalog, **params)
    assert [d["date"] for d in days] == expected
    assert all(d["windows"] == FULL_DAY for d in days)


async def test_remaining_follows_bookings_and_cancellations(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date=WEDNESDAY, start="09:30", party_size=2)
    windows = await day(catalog, WEDNESDAY)
    assert windows[1] == {"start": "09:30", "end": "10:00", "capacity": 3, "remaining": 1}
    assert [w["remaining"] for w in windows] == [3, 1, 2, 2]
    assert [w["remaining"] for w in await day(catalog, "2026-11-26")] == [3, 3, 2, 2]
    assert (await cancel(catalog, made["id"])).status_code == 200
    assert await day(catalog, WEDNESDAY) == FULL_DAY


async def test_available_only_drops_full_windows(catalog: httpx.AsyncClient) -> None:
    await book(catalog, date=WEDNESDAY, start="14:00", party_size=2)
    await book(catalog, date=WEDNESDAY, start="09:00", party_size=2)
    everything = await office_days(catalog, **{"from": WEDNESDAY, "to": WEDNESDAY})
    assert [w["remaining"] for w in everything[0]["windows"]] == [1, 3, 0, 2]
    only = await office_days(catalog, **{"from": WEDNESDAY, "to": WEDNESDAY}, available_only="true")
    assert [w["start"] for w in only[0]["windows"]] == ["09:00", "09:30", "14:30"]
    explicit = await office_days(
        catalog, **{"from": WEDNESDAY, "to": WEDNESDAY}, available_only="false"
    )
    assert explicit == everything


async def test_available_only_drops_a_full_day(catalog: httpx.AsyncClient) -> None:
    for start in ("09:00", "09:30", "14:00", "14:30"):
        url = f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/{start}"
        assert (await catalog.patch(url, json={"capacity": 0})).status_code == 200
    dates = [d["date"] for d in await office_days(catalog, available_only="true")]
    assert WEDNESDAY not in dates
    assert len(dates) == len(OPEN_DAYS) - 1
    assert WEDNESDAY in [d["date"] for d in await office_days(catalog)]


async def test_service_not_offered_there_is_422(catalog: httpx.AsyncClient) -> None:
    assert (await catalog.put("/v1/services/visa", json=SERVICE)).status_code == 200
    problem(await catalog.get(URL, params={"service": "visa"}), 422, "not_bookable")


@pytest.mark.parametrize(
    ("url", "service"),
    [
        ("/v1/offices/no-such-office/availability", SERVICE_ID),
        (URL, "no-such-service"),
        ("/v1/offices/no-such-office/availability", "no-such-service"),
    ],
)
async def test_unknown_office_or_service_is_404(
    catalog: httpx.AsyncClient, url: str, service: str
) -> None:
    problem(await catalog.get(url, params={"service": service}), 404, "not_found")


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-02-30"},
        {"from": "25/11/2026"},
        {"to": "tomorrow"},
        {"from": "2026-11-25T00:00:00+08:00"},
        {"to": ""},
        {"available_only": "maybe"},
        {"from": "2026-11-26", "to": "2026-11-25"},
    ],
)
async def test_bad_query_is_400(catalog: httpx.AsyncClient, params: dict[str, str]) -> None:
    problem(
        await catalog.get(URL, params={"service": SERVICE_ID, **params}), 400, "invalid_request"
    )


async def test_missing_service_is_400(catalog: httpx.AsyncClient) -> None:
    problem(await catalog.get(URL), 400, "invalid_request")


async def test_closed_days_are_left_out(catalog: httpx.AsyncClient) -> None:
    closure = f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}"
    assert (await catalog.put(closure, json={"reason": "x"})).status_code == 200
    holiday = {"kind": "holiday", "name": "x"}
    assert (await catalog.put("/v1/calendar/2026-11-26", json=holiday)).status_code == 200
    dates = [d["date"] for d in await office_days(catalog)]
    assert dates == [d for d in OPEN_DAYS if d not in (WEDNESDAY, "2026-11-26")]


async def test_the_horizon_moves_with_the_clock(catalog: httpx.AsyncClient) -> None:
    await set_clock(catalog, "2026-11-23T23:59:59+08:00")
    assert [d["date"] for d in await office_days(catalog)] == OPEN_DAYS
    await set_clock(catalog, "2026-11-24T00:00:30+08:00")  # Tuesday: Tue 12-08 opens
    dates = [d["date"] for d in await office_days(catalog)]
    assert dates == [*OPEN_DAYS[1:], "2026-12-08"]
    assert (await office_days(catalog, **{"from": "2026-12-08"}))[0]["windows"] == FULL_DAY
    created = await catalog.post("/v1/bookings", json=booking_body(date="2026-12-08"))
    assert created.status_code == 201, created.text
    # on Saturday the horizon runs Sun 11-29 .. Sat 12-12: ten weekdays again
    await set_clock(catalog, "2026-11-28T08:00:00+08:00")
    dates = [d["date"] for d in await office_days(catalog)]
    assert dates[0] == "2026-11-30"
    assert dates[-1] == "2026-12-11"
    assert len(dates) == 10


async def test_the_horizon_is_counted_in_the_office_zone(catalog: httpx.AsyncClient) -> None:
    """16:00 UTC on Monday is already Tuesday 00:00 in Shenzhen."""
    await set_clock(catalog, "2026-11-23T16:00:00+00:00")
    dates = [d["date"] for d in await office_days(catalog)]
    assert dates[0] == WEDNESDAY
    assert dates[-1] == "2026-12-08"


# ---------------------------------------------------------------- by service


async def put_office(client: httpx.AsyncClient, office_id: str, **changes: Any) -> None:
    response = await client.put(f"/v1/offices/{office_id}", json={**OFFICE, **changes})
    assert response.status_code == 200, response.text


async def test_service_availability_lists_each_office_offering_it(
    catalog: httpx.AsyncClient,
) -> None:
    assert (await catalog.put("/v1/services/visa", json=SERVICE)).status_code == 200
    await put_office(catalog, "gz-office", name="广州", services=["visa", SERVICE_ID])
    await put_office(catalog, "visa-only", name="Visa only", services=["visa"])
    await book(catalog, date=WEDNESDAY, party_size=2)
    response = await catalog.get(f"/v1/services/{SERVICE_ID}/availability")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["service_id"] == SERVICE_ID
    offices = {o["office_id"]: o for o in body["offices"]}
    assert set(offices) == {OFFICE_ID, "gz-office"}
    here = offices[OFFICE_ID]
    assert (here["name"], here["timezone"]) == (OFFICE["name"], "Asia/Shanghai")
    assert here["days"] == [
        {"date": d, "remaining": 8 if d == WEDNESDAY else 10} for d in OPEN_DAYS
    ]
    assert offices["gz-office"]["name"] == "广州"
    assert offices["gz-office"]["days"] == [{"date": d, "remaining": 10} for d in OPEN_DAYS]


async def test_service_availability_range_and_closed_days(catalog: httpx.AsyncClient) -> None:
    closure = f"/v1/offices/{OFFICE_ID}/closures/2026-11-26"
    assert (await catalog.put(closure, json={"reason": "x"})).status_code == 200
    response = await catalog.get(
        f"/v1/services/{SERVICE_ID}/availability", params={"from": WEDNESDAY, "to": "2026-11-30"}
    )
    assert response.status_code == 200, response.text
    [office] = response.json()["offices"]
    assert office["days"] == [
        {"date": WEDNESDAY, "remaining": 10},
        {"date": "2026-11-27", "remaining": 10},
        {"date": "2026-11-30", "remaining": 10},
    ]
    outside = await catalog.get(
        f"/v1/services/{SERVICE_ID}/availability", params={"from": "2027-01-01"}
    )
    assert outside.status_code == 200
    assert [o["days"] for o in outside.json()["offices"]] == [[]]


async def test_service_availability_errors(catalog: httpx.AsyncClient) -> None:
    problem(await catalog.get("/v1/services/no-such-service/availability"), 404, "not_found")
    url = f"/v1/services/{SERVICE_ID}/availability"
    problem(await catalog.get(url, params={"from": "2026-13-01"}), 400, "invalid_request")
    bad_range = {"from": "2026-11-26", "to": "2026-11-25"}
    problem(await catalog.get(url, params=bad_range), 400, "invalid_request")


async def test_service_offered_nowhere_lists_no_office(catalog: httpx.AsyncClient) -> None:
    assert (await catalog.put("/v1/services/visa", json=SERVICE)).status_code == 200
    response = await catalog.get("/v1/services/visa/availability")
    assert response.status_code == 200, response.text
    assert response.json() == {"service_id": "visa", "offices": []}
