"""Administration: services, offices, hours, calendar, closures, capacity, jobs, test clock."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from litestar.testing import AsyncTestClient

from slots_service.app import create_app
from tests.api.steps import book, events, get, problem, run_job, seats
from tests.conftest import (
    ADMIN_KEY,
    OFFICE,
    OFFICE_ID,
    SERVICE,
    SERVICE_ID,
    TUESDAY,
    WEDNESDAY,
    booking_body,
    make_settings,
    set_clock,
)

THURSDAY = "2026-11-26"
SATURDAY = "2026-11-28"
OTHER_OFFICE = "gz-exit-entry"

# An office PUT without `release` (API 1.1) reads back with the default one.
FIRST_COME = {"release": {"mode": "first_come"}}


def windows_of(found: dict[tuple[str, str], int], date: str) -> dict[str, int]:
    """{start: remaining} of one day, from `steps.seats`."""
    return {start: left for (day, start), left in found.items() if day == date}


async def availability(client: httpx.AsyncClient, office_id: str = OFFICE_ID) -> dict[str, Any]:
    response = await client.get(
        f"/v1/offices/{office_id}/availability", params={"service": SERVICE_ID}
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def day_windows(
    client: httpx.AsyncClient, date: str, office_id: str = OFFICE_ID
) -> list[dict[str, Any]] | None:
    """The windows of one day as availability shows them; None when the day is absent."""
    for day in (await availability(client, office_id))["days"]:
        if day["date"] == date:
            windows: list[dict[str, Any]] = day["windows"]
            return windows
    return None


async def put_other_office(client: httpx.AsyncClient) -> None:
    body = {**OFFICE, "name": "广州市出入境"}
    response = await client.put(f"/v1/offices/{OTHER_OFFICE}", json=body)
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- services

# API 1.1: a service without a business notice says so.
NO_NOTICE: dict[str, Any] = {"notice": None, "documents": [], "notice_required": False}


async def test_put_service_returns_and_stores_it(client: httpx.AsyncClient) -> None:
    response = await client.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"id": SERVICE_ID, **SERVICE, **NO_NOTICE}
    got = await client.get(f"/v1/services/{SERVICE_ID}")
    assert got.status_code == 200
    assert got.json() == response.json()


@pytest.mark.parametrize(
    "cutoff",
    [
        {"kind": "day_before", "time": "12:30"},
        {"kind": "hours_before", "hours": 2},
        {"kind": "hours_before", "hours": 0},
        {"kind": "none"},
    ],
)
async def test_every_cancel_cutoff_round_trips(
    client: httpx.AsyncClient, cutoff: dict[str, Any]
) -> None:
    body = {**SERVICE, "cancel_cutoff": cutoff}
    response = await client.put(f"/v1/services/{SERVICE_ID}", json=body)
    assert response.status_code == 200, response.text
    assert (await client.get(f"/v1/services/{SERVICE_ID}")).json()["cancel_cutoff"] == cutoff


async def test_put_service_replaces_it_whole(catalog: httpx.AsyncClient) -> None:
    first = {**SERVICE, "requires_reference": True}
    assert (await catalog.put(f"/v1/services/{SERVICE_ID}", json=first)).status_code == 200
    second = {
        "name": "居留许可-延期 Extension",
        "cancel_cutoff": {"kind": "hours_before", "hours": 4},
        "max_party_size": 2,
        "requires_reference": False,
    }
    response = await catalog.put(f"/v1/services/{SERVICE_ID}", json=second)
    assert response.status_code == 200, response.text
    assert (await catalog.get(f"/v1/services/{SERVICE_ID}")).json() == {
        "id": SERVICE_ID,
        **second,
        **NO_NOTICE,
    }
    # the new rules apply to bookings at once
    problem(
        await catalog.post("/v1/bookings", json=booking_body(party_size=3)), 422, "not_bookable"
    )
    # a field left out is not kept from before
    only_name = {"name": "only a name"}
    assert (await catalog.put(f"/v1/services/{SERVICE_ID}", json=first)).status_code == 200
    response = await catalog.put(f"/v1/services/{SERVICE_ID}", json=only_name)
    assert response.status_code == 200, response.text
    got = (await catalog.get(f"/v1/services/{SERVICE_ID}")).json()
    assert got["name"] == "only a name"
    assert got["requires_reference"] is False


async def test_list_services(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/services")).json() == []
    other = {**SERVICE, "name": "Other", "max_party_size": 1}
    for service_id, body in ((SERVICE_ID, SERVICE), ("aa-visa", other)):
        assert (await client.put(f"/v1/services/{service_id}", json=body)).status_code == 200
    listed = (await client.get("/v1/services")).json()
    assert {s["id"]: s for s in listed} == {
        SERVICE_ID: {"id": SERVICE_ID, **SERVICE, **NO_NOTICE},
        "aa-visa": {"id": "aa-visa", **other, **NO_NOTICE},
    }
    assert len(listed) == 2


async def test_unknown_service_is_404(catalog: httpx.AsyncClient) -> None:
    problem(await catalog.get("/v1/services/no-such-service"), 404, "not_found")


BAD_SERVICES: list[tuple[str, Any]] = [
    ("unknown field", {**SERVICE, "colour": "red"}),
    ("unknown field in cutoff", {**SERVICE, "cancel_cutoff": {"kind": "none", "time": "18:00"}}),
    ("no name", {k: v for k, v in SERVICE.items() if k != "name"}),
    ("empty name", {**SERVICE, "name": ""}),
    ("name not a string", {**SERVICE, "name": 7}),
    ("unknown cutoff kind", {**SERVICE, "cancel_cutoff": {"kind": "week_before"}}),
    ("cutoff without kind", {**SERVICE, "cancel_cutoff": {"time": "18:00"}}),
    ("bad cutoff time", {**SERVICE, "cancel_cutoff": {"kind": "day_before", "time": "6pm"}}),
    ("cutoff time 9:00", {**SERVICE, "cancel_cutoff": {"kind": "day_before", "time": "9:00"}}),
    ("cutoff time 24:00", {**SERVICE, "cancel_cutoff": {"kind": "day_before", "time": "24:00"}}),
    ("negative hours", {**SERVICE, "cancel_cutoff": {"kind": "hours_before", "hours": -1}}),
    ("hours as text", {**SERVICE, "cancel_cutoff": {"kind": "hours_before", "hours": "2"}}),
    ("party of zero", {**SERVICE, "max_party_size": 0}),
    ("party as text", {**SERVICE, "max_party_size": "3"}),
    ("party as float", {**SERVICE, "max_party_size": 2.5}),
    ("reference as text", {**SERVICE, "requires_reference": "yes"}),
    ("reference as 1", {**SERVICE, "requires_reference": 1}),
    ("a list", [SERVICE]),
    ("null", None),
]


@pytest.mark.parametrize(("case", "body"), BAD_SERVICES, ids=[c for c, _ in BAD_SERVICES])
async def test_invalid_service_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, case: str, body: Any
) -> None:
    before = (await catalog.get(f"/v1/services/{SERVICE_ID}")).json()
    problem(await catalog.put(f"/v1/services/{SERVICE_ID}", json=body), 400, "invalid_request")
    problem(await catalog.put("/v1/services/brand-new", json=body), 400, "invalid_request")
    assert (await catalog.get(f"/v1/services/{SERVICE_ID}")).json() == before
    assert [s["id"] for s in (await catalog.get("/v1/services")).json()] == [SERVICE_ID]


@pytest.mark.parametrize(
    "service_id", ["Residence", "-leading-dash", "under_score", "a" * 64, "dot.ted", "ü"]
)
async def test_bad_service_id_in_path_is_400(client: httpx.AsyncClient, service_id: str) -> None:
    problem(await client.put(f"/v1/services/{service_id}", json=SERVICE), 400, "invalid_request")
    assert (await client.get("/v1/services")).json() == []


async def test_longest_service_id_is_accepted(client: httpx.AsyncClient) -> None:
    service_id = "a" + "-0" * 31
    assert len(service_id) == 63
    response = await client.put(f"/v1/services/{service_id}", json=SERVICE)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == service_id


# ---------------------------------------------------------------- offices


async def test_put_office_returns_and_stores_it(catalog: httpx.AsyncClient) -> None:
    got = await catalog.get(f"/v1/offices/{OFFICE_ID}")
    assert got.status_code == 200
    assert got.json() == {"id": OFFICE_ID, **OFFICE, **FIRST_COME}
    response = await catalog.put(f"/v1/offices/{OFFICE_ID}", json=OFFICE)
    assert response.status_code == 200, response.text
    assert response.json() == got.json()


async def test_window_minutes_default_to_30(catalog: httpx.AsyncClient) -> None:
    body = {k: v for k, v in OFFICE.items() if k != "window_minutes"}
    response = await catalog.put(f"/v1/offices/{OTHER_OFFICE}", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["window_minutes"] == 30
    starts = [w["start"] for w in await day_windows(catalog, WEDNESDAY, OTHER_OFFICE) or []]
    assert starts == ["09:00", "09:30", "14:00", "14:30"]


async def test_put_office_replaces_it_whole(catalog: httpx.AsyncClient) -> None:
    extension = {**SERVICE, "name": "Extension"}
    assert (await catalog.put("/v1/services/extension", json=extension)).status_code == 200
    replaced = {
        "name": "新名字",
        "timezone": "Asia/Urumqi",
        "services": ["extension"],
        "window_minutes": 20,
        "hours": {"sat": [{"start": "08:00", "end": "09:00", "capacity": 1}]},
    }
    response = await catalog.put(f"/v1/offices/{OFFICE_ID}", json=replaced)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": OFFICE_ID, **replaced, **FIRST_COME}
    expected = {"id": OFFICE_ID, **replaced, **FIRST_COME}
    assert (await catalog.get(f"/v1/offices/{OFFICE_ID}")).json() == expected
    # the service it no longer lists is no longer offered there
    response = await catalog.get(
        f"/v1/offices/{OFFICE_ID}/availability", params={"service": SERVICE_ID}
    )
    problem(response, 422, "not_bookable")


async def test_list_offices(catalog: httpx.AsyncClient) -> None:
    await put_other_office(catalog)
    listed = (await catalog.get("/v1/offices")).json()
    assert len(listed) == 2
    assert {o["id"]: o for o in listed} == {
        OFFICE_ID: {"id": OFFICE_ID, **OFFICE, **FIRST_COME},
        OTHER_OFFICE: {"id": OTHER_OFFICE, **OFFICE, **FIRST_COME, "name": "广州市出入境"},
    }


async def test_unknown_office_is_404(catalog: httpx.AsyncClient) -> None:
    problem(await catalog.get("/v1/offices/no-such-office"), 404, "not_found")


def office_with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(OFFICE)
    body.update(changes)
    return body


def monday(*ranges: dict[str, Any]) -> dict[str, Any]:
    return office_with(hours={"mon": list(ranges)})


def span(start: str, end: str, capacity: Any = 3, **extra: Any) -> dict[str, Any]:
    return {"start": start, "end": end, "capacity": capacity, **extra}


BAD_OFFICES: list[tuple[str, Any]] = [
    ("unknown field", office_with(address="深南大道")),
    ("unknown field in a range", monday(span("09:00", "10:00", note="x"))),
    ("no name", {k: v for k, v in OFFICE.items() if k != "name"}),
    ("no hours", {k: v for k, v in OFFICE.items() if k != "hours"}),
    ("time 9:00", monday(span("9:00", "10:00"))),
    ("time 09:00:00", monday(span("09:00:00", "10:00:00"))),
    ("time 24:00", monday(span("23:00", "24:00"))),
    ("time 09:60", monday(span("09:00", "09:60"))),
    ("end before start", monday(span("10:00", "09:00"))),
    ("end equals start", monday(span("09:00", "09:00"))),
    ("overlapping", monday(span("09:00", "10:00"), span("09:30", "11:00"))),
    ("nested", monday(span("09:00", "12:00"), span("10:00", "11:00"))),
    ("same range twice", monday(span("09:00", "10:00"), span("09:00", "10:00"))),
    ("not whole windows", monday(span("09:00", "09:45"))),
    ("bad timezone", office_with(timezone="Mars/Olympus_Mons")),
    ("timezone path", office_with(timezone="../../etc/passwd")),
    ("empty timezone", office_with(timezone="")),
    ("unknown service", office_with(services=[SERVICE_ID, "no-such-service"])),
    ("bad service id", office_with(services=["Residence Permit"])),
    ("service twice", office_with(services=[SERVICE_ID, SERVICE_ID])),
    ("negative capacity", monday(span("09:00", "10:00", -1))),
    ("capacity as text", monday(span("09:00", "10:00", "3"))),
    ("capacity as float", monday(span("09:00", "10:00", 1.5))),
    ("capacity null", monday(span("09:00", "10:00", None))),
    ("window_minutes as text", office_with(window_minutes="30")),
    ("window_minutes zero", office_with(window_minutes=0)),
    ("weekday monday", office_with(hours={"monday": [span("09:00", "10:00")]})),
    ("hours a list", office_with(hours=[span("09:00", "10:00")])),
    ("services a string", office_with(services=SERVICE_ID)),
    ("name a number", office_with(name=1)),
]


@pytest.mark.parametrize(("case", "body"), BAD_OFFICES, ids=[c for c, _ in BAD_OFFICES])
async def test_invalid_office_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, case: str, body: Any
) -> None:
    before = (await catalog.get(f"/v1/offices/{OFFICE_ID}")).json()
    seats_before = await seats(catalog)
    problem(await catalog.put(f"/v1/offices/{OFFICE_ID}", json=body), 400, "invalid_request")
    problem(await catalog.put("/v1/offices/brand-new", json=body), 400, "invalid_request")
    assert (await catalog.get(f"/v1/offices/{OFFICE_ID}")).json() == before
    assert [o["id"] for o in (await catalog.get("/v1/offices")).json()] == [OFFICE_ID]
    problem(await catalog.get("/v1/offices/brand-new"), 404, "not_found")
    assert await seats(catalog) == seats_before


@pytest.mark.parametrize("office_id", ["SZ", "sz_office", "-sz", "a" * 64, "sz office"])
async def test_bad_office_id_in_path_is_400(catalog: httpx.AsyncClient, office_id: str) -> None:
    problem(await catalog.put(f"/v1/offices/{office_id}", json=OFFICE), 400, "invalid_request")
    assert [o["id"] for o in (await catalog.get("/v1/offices")).json()] == [OFFICE_ID]


# ---------------------------------------------------------------- hours re-plan only new days

NEW_HOURS = {
    day: [{"start": "08:00", "end": "09:00", "capacity": 5}]
    for day in ("mon", "tue", "wed", "thu", "fri")
}


async def test_changed_hours_keep_opened_days_and_plan_new_ones(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog, date=WEDNESDAY, start="09:00")  # opens the horizon
    opened = await availability(catalog)
    last = opened["days"][-1]["date"]
    assert last == "2026-12-07"
    response = await catalog.put(f"/v1/offices/{OFFICE_ID}", json=office_with(hours=NEW_HOURS))
    assert response.status_code == 200, response.text
    # every day already in the horizon keeps its windows, and its bookings
    assert await availability(catalog) == opened
    assert await get(catalog, made["id"]) == made
    problem(
        await catalog.post("/v1/bookings", json=booking_body(date=THURSDAY, start="08:00")),
        422,
        "not_bookable",
    )
    assert (await book(catalog, date=THURSDAY, start="09:30"))["end"] == "10:00"
    # the day that enters the horizon next is planned from the new hours
    await set_clock(catalog, "2026-11-24T00:00:30+08:00")
    assert await day_windows(catalog, "2026-12-08") == [
        {"start": "08:00", "end": "08:30", "capacity": 5, "remaining": 5},
        {"start": "08:30", "end": "09:00", "capacity": 5, "remaining": 5},
    ]
    assert await day_windows(catalog, "2026-12-07") == opened["days"][-1]["windows"]
    created = await book(catalog, date="2026-12-08", start="08:30", party_size=5)
    assert created["end"] == "09:00"
    problem(
        await catalog.post("/v1/bookings", json=booking_body(date="2026-12-08", start="09:00")),
        422,
        "not_bookable",
    )


async def test_changed_window_length_keeps_opened_windows(catalog: httpx.AsyncClient) -> None:
    await seats(catalog)  # opens the horizon
    hourly = office_with(window_minutes=60)
    assert (await catalog.put(f"/v1/offices/{OFFICE_ID}", json=hourly)).status_code == 200
    created = await book(catalog, date=WEDNESDAY, start="09:30")
    assert (created["start"], created["end"]) == ("09:30", "10:00")
    assert created["ends_at"] == f"{WEDNESDAY}T10:00:00+08:00"
    await set_clock(catalog, "2026-11-24T00:00:30+08:00")
    new_day = await day_windows(catalog, "2026-12-08") or []
    assert [(w["start"], w["end"]) for w in new_day] == [("09:00", "10:00"), ("14:00", "15:00")]


async def test_hours_of_a_day_not_yet_opened_follow_the_office(
    catalog: httpx.AsyncClient,
) -> None:
    """Nothing read or booked yet: the first look plans the days from the newest hours."""
    response = await catalog.put(f"/v1/offices/{OFFICE_ID}", json=office_with(hours=NEW_HOURS))
    assert response.status_code == 200, response.text
    assert [w["start"] for w in await day_windows(catalog, WEDNESDAY) or []] == ["08:00", "08:30"]


async def test_new_weekday_hours_leave_opened_closed_days_closed(
    catalog: httpx.AsyncClient,
) -> None:
    """Saturdays already in the horizon were opened closed; Saturday hours open later ones."""
    await seats(catalog)  # opens the horizon, Saturdays 11-28 and 12-05 included
    saturdays = {**OFFICE["hours"], "sat": [{"start": "09:00", "end": "10:00", "capacity": 1}]}
    response = await catalog.put(f"/v1/offices/{OFFICE_ID}", json=office_with(hours=saturdays))
    assert response.status_code == 200, response.text
    assert await day_windows(catalog, SATURDAY) is None
    # whichever process or job looks at the day next, it stays as it was opened
    assert await run_job(catalog, "open-horizon") == {"days_opened": 0, "windows_created": 0}
    assert await day_windows(catalog, SATURDAY) is None
    problem(
        await catalog.post("/v1/bookings", json=booking_body(date=SATURDAY)), 422, "not_bookable"
    )
    await set_clock(catalog, "2026-11-28T08:00:00+08:00")  # the horizon now ends Sat 12-12
    assert await day_windows(catalog, "2026-12-05") is None
    assert [w["start"] for w in await day_windows(catalog, "2026-12-12") or []] == [
        "09:00",
        "09:30",
    ]


# ---------------------------------------------------------------- calendar


async def test_holiday_closes_the_day_everywhere_and_cancels_its_bookings(
    catalog: httpx.AsyncClient,
) -> None:
    await put_other_office(catalog)
    here = await book(catalog, date=WEDNESDAY)
    there_body = {**booking_body(date=WEDNESDAY, start="14:00"), "office_id": OTHER_OFFICE}
    there = await catalog.post("/v1/bookings", json=there_body)
    assert there.status_code == 201, there.text
    elsewhere = await book(catalog, date=THURSDAY)
    _, cursor = await events(catalog)

    response = await catalog.put(
        f"/v1/calendar/{WEDNESDAY}", json={"kind": "holiday", "name": "国庆节"}
    )
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("date", "kind", "name")} == {
        "date": WEDNESDAY,
        "kind": "holiday",
        "name": "国庆节",
    }
    for office_id in (OFFICE_ID, OTHER_OFFICE):
        assert await day_windows(catalog, WEDNESDAY, office_id) is None
        assert await day_windows(catalog, THURSDAY, office_id) is not None
    for booking_id in (here["id"], there.json()["id"]):
        cancelled = await get(catalog, booking_id)
        assert cancelled["status"] == "cancelled"
        assert cancelled["cancelled_by"] == "office"
        assert cancelled["cancel_reason"] == "国庆节"
        assert cancelled["cancelled_at"] == "2026-11-23T10:00:00+08:00"
    assert (await get(catalog, elsewhere["id"]))["status"] == "booked"
    feed, _ = await events(catalog, cursor)
    assert sorted((e["type"], e["booking"]["id"]) for e in feed) == sorted(
        ("booking.cancelled", b) for b in (here["id"], there.json()["id"])
    )
    assert all(e["booking"]["status"] == "cancelled" for e in feed)
    problem(await catalog.post("/v1/bookings", json=booking_body()), 422, "not_bookable")
    problem(await catalog.post("/v1/bookings", json=there_body), 422, "not_bookable")
    listed = (await catalog.get("/v1/calendar")).json()
    assert [(c["date"], c["kind"]) for c in listed] == [(WEDNESDAY, "holiday")]


async def test_holiday_marked_before_the_day_opens(catalog: httpx.AsyncClient) -> None:
    response = await catalog.put(f"/v1/calendar/{WEDNESDAY}", json={"kind": "holiday"})
    assert response.status_code == 200, response.text
    assert await day_windows(catalog, WEDNESDAY) is None
    problem(await catalog.post("/v1/bookings", json=booking_body()), 422, "not_bookable")


async def test_deleting_a_holiday_reopens_the_day(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date=WEDNESDAY)
    holiday = {"kind": "holiday", "name": "x"}
    assert (await catalog.put(f"/v1/calendar/{WEDNESDAY}", json=holiday)).status_code == 200
    response = await catalog.delete(f"/v1/calendar/{WEDNESDAY}")
    assert response.status_code in (200, 204), response.text
    assert (await catalog.get("/v1/calendar")).json() == []
    # the booking stays cancelled; its seats are free
    assert (await get(catalog, made["id"]))["status"] == "cancelled"
    assert windows_of(await seats(catalog), WEDNESDAY) == {
        "09:00": 3,
        "09:30": 3,
        "14:00": 2,
        "14:30": 2,
    }
    await book(catalog, date=WEDNESDAY, party_size=3)
    problem(await catalog.delete(f"/v1/calendar/{WEDNESDAY}"), 404, "not_found")


async def test_delete_without_a_mark_is_404(catalog: httpx.AsyncClient) -> None:
    problem(await catalog.delete(f"/v1/calendar/{WEDNESDAY}"), 404, "not_found")


MONDAY_ONLY = office_with(
    hours={
        "mon": [{"start": "10:00", "end": "11:00", "capacity": 4}],
        "fri": [{"start": "09:00", "end": "10:00", "capacity": 3}],
    }
)


@pytest.mark.parametrize("opened_first", [True, False], ids=["opened", "not-opened"])
async def test_make_up_workday_opens_a_saturday(
    catalog: httpx.AsyncClient, opened_first: bool
) -> None:
    assert (await catalog.put(f"/v1/offices/{OFFICE_ID}", json=MONDAY_ONLY)).status_code == 200
    if opened_first:
        assert await day_windows(catalog, SATURDAY) is None
    response = await catalog.put(
        f"/v1/calendar/{SATURDAY}", json={"kind": "workday", "as": "mon", "name": "调休"}
    )
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("date", "kind", "as", "name")} == {
        "date": SATURDAY,
        "kind": "workday",
        "as": "mon",
        "name": "调休",
    }
    assert await day_windows(catalog, SATURDAY) == [
        {"start": "10:00", "end": "10:30", "capacity": 4, "remaining": 4},
        {"start": "10:30", "end": "11:00", "capacity": 4, "remaining": 4},
    ]
    created = await book(catalog, date=SATURDAY, start="10:30")
    assert created["starts_at"] == f"{SATURDAY}T10:30:00+08:00"
    assert (await day_windows(catalog, SATURDAY) or [])[1]["remaining"] == 3
    assert await day_windows(catalog, "2026-11-29") is None  # Sunday stays closed


BAD_CALENDAR: list[tuple[str, Any]] = [
    ("unknown kind", {"kind": "vacation"}),
    ("no kind", {"name": "x"}),
    ("workday without as", {"kind": "workday", "name": "调休"}),
    ("as monday", {"kind": "workday", "as": "monday"}),
    ("unknown field", {"kind": "holiday", "name": "x", "closed": True}),
    ("as on a holiday", {"kind": "holiday", "as": "mon"}),
    ("name a number", {"kind": "holiday", "name": 1}),
]


@pytest.mark.parametrize(("case", "body"), BAD_CALENDAR, ids=[c for c, _ in BAD_CALENDAR])
async def test_invalid_calendar_mark_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, case: str, body: Any
) -> None:
    before = await seats(catalog)
    problem(await catalog.put(f"/v1/calendar/{WEDNESDAY}", json=body), 400, "invalid_request")
    problem(await catalog.put(f"/v1/calendar/{SATURDAY}", json=body), 400, "invalid_request")
    assert (await catalog.get("/v1/calendar")).json() == []
    assert await seats(catalog) == before


# ---------------------------------------------------------------- closures


async def test_closure_cancels_the_bookings_of_that_office_and_day(
    catalog: httpx.AsyncClient,
) -> None:
    await put_other_office(catalog)
    first = await book(catalog, date=WEDNESDAY, start="09:00", party_size=2)
    second = await book(catalog, date=WEDNESDAY, start="14:30")
    thursday = await book(catalog, date=THURSDAY)
    other_body = {**booking_body(date=WEDNESDAY), "office_id": OTHER_OFFICE}
    other = await catalog.post("/v1/bookings", json=other_body)
    assert other.status_code == 201, other.text
    _, cursor = await events(catalog)

    reason = "停电 power cut"
    response = await catalog.put(
        f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}", json={"reason": reason}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "office_id": OFFICE_ID,
        "date": WEDNESDAY,
        "reason": reason,
        "cancelled_bookings": 2,
    }
    for made in (first, second):
        cancelled = await get(catalog, made["id"])
        assert cancelled["status"] == "cancelled"
        assert (cancelled["cancelled_by"], cancelled["cancel_reason"]) == ("office", reason)
        assert {k: v for k, v in cancelled.items() if not k.startswith("cancel")} == {
            k: v for k, v in made.items() if not k.startswith("cancel") and k != "status"
        } | {"status": "cancelled"}
    assert (await get(catalog, thursday["id"]))["status"] == "booked"
    assert (await get(catalog, other.json()["id"]))["status"] == "booked"
    feed, _ = await events(catalog, cursor)
    assert sorted((e["type"], e["booking"]["id"]) for e in feed) == sorted(
        ("booking.cancelled", m["id"]) for m in (first, second)
    )
    assert {e["booking"]["cancel_reason"] for e in feed} == {reason}
    assert await day_windows(catalog, WEDNESDAY) is None
    assert await day_windows(catalog, WEDNESDAY, OTHER_OFFICE) is not None
    problem(await catalog.post("/v1/bookings", json=booking_body()), 422, "not_bookable")
    # closing it again cancels nobody twice
    again = await catalog.put(f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}", json={"reason": "x"})
    assert again.status_code == 200, again.text
    assert again.json()["cancelled_bookings"] == 0
    assert (await events(catalog, cursor))[0] == feed


async def test_deleting_a_closure_reopens_the_day_with_its_seats_free(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog, date=WEDNESDAY, party_size=3)
    closure = f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}"
    assert (await catalog.put(closure, json={"reason": "training"})).status_code == 200
    response = await catalog.delete(closure)
    assert response.status_code in (200, 204), response.text
    assert windows_of(await seats(catalog), WEDNESDAY) == {
        "09:00": 3,
        "09:30": 3,
        "14:00": 2,
        "14:30": 2,
    }
    assert (await get(catalog, made["id"]))["status"] == "cancelled"
    await book(catalog, date=WEDNESDAY, party_size=3)
    problem(await catalog.delete(closure), 404, "not_found")


async def test_closing_today_cancels_todays_bookings(catalog: httpx.AsyncClient) -> None:
    """An emergency closure of the day already under way."""
    made = await book(catalog, date=TUESDAY, start="14:00")
    await set_clock(catalog, "2026-11-24T08:00:00+08:00")
    response = await catalog.put(
        f"/v1/offices/{OFFICE_ID}/closures/{TUESDAY}", json={"reason": "台风 typhoon"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["cancelled_bookings"] == 1
    cancelled = await get(catalog, made["id"])
    assert (cancelled["status"], cancelled["cancelled_by"]) == ("cancelled", "office")
    assert cancelled["cancel_reason"] == "台风 typhoon"


async def test_closure_of_an_unknown_office_is_404(catalog: httpx.AsyncClient) -> None:
    url = f"/v1/offices/no-such-office/closures/{WEDNESDAY}"
    problem(await catalog.put(url, json={"reason": "x"}), 404, "not_found")
    problem(await catalog.delete(url), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [{}, {"reason": ""}, {"reason": 5}, {"reason": "x", "until": "2026-11-26"}, None, "closed"],
)
async def test_invalid_closure_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, body: Any
) -> None:
    made = await book(catalog, date=WEDNESDAY)
    before = await seats(catalog)
    response = await catalog.put(f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}", json=body)
    problem(response, 400, "invalid_request")
    assert await seats(catalog) == before
    assert await get(catalog, made["id"]) == made
    problem(await catalog.delete(f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}"), 404, "not_found")


async def test_closure_beyond_the_horizon_does_not_plan_the_day_early(
    catalog: httpx.AsyncClient,
) -> None:
    """A day closed and reopened before it enters the horizon still gets the newest hours."""
    far = "2026-12-10"  # a Thursday, 17 days out
    closure = f"/v1/offices/{OFFICE_ID}/closures/{far}"
    assert (await catalog.put(closure, json={"reason": "inspection"})).status_code == 200
    assert (await catalog.delete(closure)).status_code in (200, 204)
    response = await catalog.put(f"/v1/offices/{OFFICE_ID}", json=office_with(hours=NEW_HOURS))
    assert response.status_code == 200, response.text
    await set_clock(catalog, "2026-11-27T00:00:30+08:00")  # the horizon now ends on 12-11
    assert [w["start"] for w in await day_windows(catalog, far) or []] == ["08:00", "08:30"]


async def test_closure_beyond_the_horizon_holds_when_the_day_opens(
    catalog: httpx.AsyncClient,
) -> None:
    far = "2026-12-10"
    closure = f"/v1/offices/{OFFICE_ID}/closures/{far}"
    assert (await catalog.put(closure, json={"reason": "inspection"})).status_code == 200
    await set_clock(catalog, "2026-11-27T00:00:30+08:00")
    assert await day_windows(catalog, far) is None
    problem(await catalog.post("/v1/bookings", json=booking_body(date=far)), 422, "not_bookable")
    assert (await catalog.delete(closure)).status_code in (200, 204)
    assert len(await day_windows(catalog, far) or []) == 4


# ---------------------------------------------------------------- window capacity


async def test_raising_capacity_lets_more_book(catalog: httpx.AsyncClient) -> None:
    url = f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/09:00"
    problem(await catalog.post("/v1/bookings", json=booking_body(party_size=4)), 409, "slot_full")
    response = await catalog.patch(url, json={"capacity": 4})
    assert response.status_code == 200, response.text
    assert response.json() == {"start": "09:00", "end": "09:30", "capacity": 4, "remaining": 4}
    assert windows_of(await seats(catalog), WEDNESDAY)["09:00"] == 4
    await book(catalog, date=WEDNESDAY, party_size=4)
    assert windows_of(await seats(catalog), WEDNESDAY) == {
        "09:00": 0,
        "09:30": 3,
        "14:00": 2,
        "14:30": 2,
    }
    assert windows_of(await seats(catalog), THURSDAY)["09:00"] == 3


async def test_lowering_capacity_below_booked_cancels_nobody(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date=WEDNESDAY, party_size=2)
    url = f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/09:00"
    response = await catalog.patch(url, json={"capacity": 1})
    assert response.status_code == 200, response.text
    assert response.json() == {"start": "09:00", "end": "09:30", "capacity": 1, "remaining": 0}
    assert await get(catalog, made["id"]) == made
    window = (await day_windows(catalog, WEDNESDAY) or [])[0]
    assert window == {"start": "09:00", "end": "09:30", "capacity": 1, "remaining": 0}
    problem(await catalog.post("/v1/bookings", json=booking_body()), 409, "slot_full")
    response = await catalog.get(
        f"/v1/offices/{OFFICE_ID}/availability",
        params={"service": SERVICE_ID, "from": WEDNESDAY, "to": WEDNESDAY, "available_only": True},
    )
    assert [w["start"] for w in response.json()["days"][0]["windows"]] == [
        "09:30",
        "14:00",
        "14:30",
    ]
    # the excess shrinks as seats come back: after the cancellation one seat is free
    cancelled = await catalog.post(f"/v1/bookings/{made['id']}/cancel", json={"by": "person"})
    assert cancelled.status_code == 200, cancelled.text
    assert windows_of(await seats(catalog), WEDNESDAY)["09:00"] == 1
    await book(catalog, date=WEDNESDAY)
    problem(await catalog.post("/v1/bookings", json=booking_body()), 409, "slot_full")


async def test_capacity_zero_closes_the_window_to_new_bookings(catalog: httpx.AsyncClient) -> None:
    url = f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/14:30"
    assert (await catalog.patch(url, json={"capacity": 0})).status_code == 200
    body = booking_body(start="14:30")
    problem(await catalog.post("/v1/bookings", json=body), 409, "slot_full")
    assert windows_of(await seats(catalog), WEDNESDAY)["14:30"] == 0


@pytest.mark.parametrize(
    ("office_id", "date", "start"),
    [
        (OFFICE_ID, WEDNESDAY, "11:00"),
        (OFFICE_ID, WEDNESDAY, "09:15"),
        (OFFICE_ID, SATURDAY, "09:00"),
        (OFFICE_ID, "2027-03-03", "09:00"),
        ("no-such-office", WEDNESDAY, "09:00"),
    ],
)
async def test_patch_unknown_window_is_404(
    catalog: httpx.AsyncClient, office_id: str, date: str, start: str
) -> None:
    before = await seats(catalog)
    response = await catalog.patch(
        f"/v1/offices/{office_id}/windows/{date}/{start}", json={"capacity": 9}
    )
    problem(response, 404, "not_found")
    assert await seats(catalog) == before


@pytest.mark.parametrize(
    ("start", "body"),
    [
        ("9:00", {"capacity": 9}),
        ("0900", {"capacity": 9}),
        ("25:00", {"capacity": 9}),
        ("09:00", {"capacity": -1}),
        ("09:00", {"capacity": "9"}),
        ("09:00", {"capacity": 9.5}),
        ("09:00", {"capacity": 9, "reason": "x"}),
        ("09:00", {}),
    ],
)
async def test_patch_invalid_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, start: str, body: dict[str, Any]
) -> None:
    before = await seats(catalog)
    response = await catalog.patch(
        f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/{start}", json=body
    )
    problem(response, 400, "invalid_request")
    assert await seats(catalog) == before


# ---------------------------------------------------------------- jobs


async def test_open_horizon_job(catalog: httpx.AsyncClient) -> None:
    # Tue 11-24 .. Mon 12-07: ten weekdays of four windows each
    assert await run_job(catalog, "open-horizon") == {"days_opened": 10, "windows_created": 40}
    assert await run_job(catalog, "open-horizon") == {"days_opened": 0, "windows_created": 0}
    await set_clock(catalog, "2026-11-24T00:00:30+08:00")
    assert await run_job(catalog, "open-horizon") == {"days_opened": 1, "windows_created": 4}


async def test_sweep_no_shows_job(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date=TUESDAY, start="09:00")
    assert await run_job(catalog, "sweep-no-shows") == {"no_shows": 0, "people_blocked": 0}
    await set_clock(catalog, "2026-11-24T10:00:01+08:00")  # 30 minutes after 09:30
    assert await run_job(catalog, "sweep-no-shows") == {"no_shows": 1, "people_blocked": 0}
    assert (await get(catalog, made["id"]))["status"] == "no_show"
    assert await run_job(catalog, "sweep-no-shows") == {"no_shows": 0, "people_blocked": 0}


async def test_send_reminders_job(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date=WEDNESDAY)
    assert await run_job(catalog, "send-reminders") == {"reminders": 0}
    _, cursor = await events(catalog)
    await set_clock(catalog, "2026-11-24T18:00:00+08:00")
    assert await run_job(catalog, "send-reminders") == {"reminders": 1}
    assert await run_job(catalog, "send-reminders") == {"reminders": 0}
    feed, _ = await events(catalog, cursor)
    assert [(e["type"], e["booking"]["id"]) for e in feed] == [("booking.reminder", made["id"])]


async def test_reconcile_job(catalog: httpx.AsyncClient) -> None:
    await seats(catalog)  # opens the horizon
    await book(catalog, date=WEDNESDAY, party_size=2)
    result = await run_job(catalog, "reconcile")
    assert set(result) == {"days", "windows_corrected"}
    assert result["days"] == 10
    assert windows_of(await seats(catalog), WEDNESDAY)["09:00"] == 1
    problem(await catalog.post("/v1/bookings", json=booking_body(party_size=2)), 409, "slot_full")


async def test_purge_job(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date=WEDNESDAY)
    result = await run_job(catalog, "purge")
    assert all(isinstance(n, int) for n in result.values())
    assert result["bookings"] == 0
    assert result["events"] == 0
    assert await get(catalog, made["id"]) == made
    await set_clock(catalog, "2027-05-25T10:00:00+08:00")  # 181 days after the window
    result = await run_job(catalog, "purge")
    assert result["bookings"] == 1
    assert result["events"] == 1
    problem(await catalog.get(f"/v1/bookings/{made['id']}"), 404, "not_found")


@pytest.mark.parametrize("job", ["nope", "open_horizon", "OPEN-HORIZON", "purge-all"])
async def test_unknown_job_is_404(catalog: httpx.AsyncClient, job: str) -> None:
    problem(await catalog.post(f"/v1/admin/jobs/{job}"), 404, "not_found")


# ---------------------------------------------------------------- test clock


async def test_test_clock_set_read_and_reset(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/admin/clock", json={"now": "2026-11-24T18:01:00+08:00"})
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["now"]) == datetime.fromisoformat(
        "2026-11-24T18:01:00+08:00"
    )
    got = await client.get("/v1/admin/clock")
    assert got.status_code == 200
    assert datetime.fromisoformat(got.json()["now"]) == datetime.fromisoformat(
        "2026-11-24T10:01:00+00:00"
    )
    reset = await client.delete("/v1/admin/clock")
    assert reset.status_code in (200, 204), reset.text
    real = datetime.fromisoformat((await client.get("/v1/admin/clock")).json()["now"])
    assert abs(real - datetime.now(UTC)) < timedelta(minutes=1)


async def test_test_clock_drives_the_rules(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, date=WEDNESDAY)
    assert made["created_at"] == "2026-11-23T10:00:00+08:00"
    await set_clock(catalog, "2026-11-24T18:01:00+08:00")
    late = await catalog.post(f"/v1/bookings/{made['id']}/cancel", json={"by": "person"})
    problem(late, 409, "cancel_cutoff_passed")


@pytest.mark.parametrize(
    "body",
    [
        {"now": "2026-11-24T18:01:00"},
        {"now": "tomorrow"},
        {"now": 1764000000},
        {},
        {"now": "2026-11-24T18:01:00+08:00", "speed": 2},
    ],
)
async def test_invalid_clock_is_400_and_changes_nothing(
    catalog: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    problem(await catalog.put("/v1/admin/clock", json=body), 400, "invalid_request")
    now = (await catalog.get("/v1/admin/clock")).json()["now"]
    assert datetime.fromisoformat(now) == datetime.fromisoformat("2026-11-23T10:00:00+08:00")


async def test_test_clock_routes_are_404_when_it_is_off(database_url: str, redis_url: str) -> None:
    app = create_app(make_settings(database_url, redis_url, test_clock=False))
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as off:
        off.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        body = {"now": "2026-11-24T18:01:00+08:00"}
        problem(await off.put("/v1/admin/clock", json=body), 404, "not_found")
        problem(await off.get("/v1/admin/clock"), 404, "not_found")
        problem(await off.delete("/v1/admin/clock"), 404, "not_found")
        # and the service runs on real time
        assert (await off.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
        office = await off.put(f"/v1/offices/{OFFICE_ID}", json=OFFICE)
        assert office.status_code == 200, office.text
        before = datetime.now(ZoneInfo(OFFICE["timezone"])).date()
        response = await off.get(
            f"/v1/offices/{OFFICE_ID}/availability", params={"service": SERVICE_ID}
        )
        after = datetime.now(ZoneInfo(OFFICE["timezone"])).date()
        dates = [datetime.fromisoformat(d["date"]).date() for d in response.json()["days"]]
        assert dates
        assert all(before < d <= after + timedelta(days=14) for d in dates)
