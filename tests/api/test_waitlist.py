"""API 1.1 waitlist, black box over HTTP: freed seats go to the oldest fitting waiting entry in
the transaction that freed them, so the public and the gate never see them free."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.steps import cancel, events, problem, remaining, run_job
from tests.conftest import (
    OFFICE_ID,
    SERVICE_ID,
    TUESDAY,
    WEDNESDAY,
    booking_body,
    person,
    set_clock,
)

# Wednesday's windows (conftest WEEK): 09:00 and 09:30 with 3 seats, 14:00 and 14:30 with 2.
STARTS = {"09:00": 3, "09:30": 3, "14:00": 2, "14:30": 2}


def wait_body(
    who: dict[str, str] | None = None, first: str = WEDNESDAY, last: str = WEDNESDAY, **extra: Any
) -> dict[str, Any]:
    return {
        "office_id": OFFICE_ID,
        "service_id": SERVICE_ID,
        "from": first,
        "to": last,
        "person": who or person(),
        "channel": "app",
        **extra,
    }


async def join(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/waitlist", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def fill(client: httpx.AsyncClient, day: str = WEDNESDAY) -> list[str]:
    """Book every seat of the day; returns the bookings made."""
    made = []
    for start, seats in STARTS.items():
        for _ in range(seats):
            response = await client.post("/v1/bookings", json=booking_body(date=day, start=start))
            assert response.status_code == 201, response.text
            made.append(response.json()["id"])
    return made


async def entry(client: httpx.AsyncClient, waitlist_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/waitlist/{waitlist_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def exact_gate(client: httpx.AsyncClient) -> None:
    """The gate's counters equal the durable record."""
    assert (await run_job(client, "reconcile"))["windows_corrected"] == 0


async def test_a_freed_seat_goes_to_the_person_waiting(catalog: httpx.AsyncClient) -> None:
    client = catalog
    made = await fill(client)
    waiting = await join(client, wait_body())
    assert waiting["status"] == "waiting"
    assert waiting["id"].startswith("W")
    assert waiting["booking_id"] is None
    assert (waiting["from"], waiting["to"], waiting["channel"]) == (WEDNESDAY, WEDNESDAY, "app")
    assert await entry(client, waiting["id"]) == waiting
    assert (await cancel(client, made[0])).status_code == 200
    booked = await entry(client, waiting["id"])
    assert booked["status"] == "booked"
    got = (await client.get(f"/v1/bookings/{booked['booking_id']}")).json()
    assert (got["date"], got["start"], got["channel"]) == (WEDNESDAY, "09:00", "app")
    # The public never saw the seat free.
    assert await remaining(client, WEDNESDAY, "09:00") == 0
    response = await client.post("/v1/bookings", json=booking_body(start="09:00"))
    problem(response, 409, "slot_full")
    await exact_gate(client)
    feed, _ = await events(client)
    kinds = [e["type"] for e in feed]
    assert kinds[-2:] == ["booking.created", "waitlist.booked"]
    assert feed[-1]["waitlist"]["id"] == waiting["id"]
    assert feed[-1]["booking"]["id"] == booked["booking_id"]


async def test_an_entry_is_booked_at_once_when_a_window_has_seats(
    catalog: httpx.AsyncClient,
) -> None:
    client = catalog
    made = await join(client, wait_body(party_size=2))
    assert made["status"] == "booked"
    got = (await client.get(f"/v1/bookings/{made['booking_id']}")).json()
    assert (got["date"], got["start"], got["party_size"]) == (WEDNESDAY, "09:00", 2)
    assert await remaining(client, WEDNESDAY, "09:00") == 1
    await exact_gate(client)


async def test_the_oldest_fitting_entry_first_and_rule_failures_pass_over(
    catalog: httpx.AsyncClient,
) -> None:
    client = catalog
    made = await fill(client)
    big = await join(client, wait_body(party_size=3))  # oldest, does not fit one seat
    holder = person()
    held = await join(client, wait_body(holder))  # will hold a booking: passed over
    third = await join(client, wait_body())
    fourth = await join(client, wait_body())
    # The holder books another day meanwhile (waiting does not stop booking).
    response = await client.post("/v1/bookings", json=booking_body(holder, date=TUESDAY))
    assert response.status_code == 201, response.text
    assert (await cancel(client, made[0])).status_code == 200
    assert (await entry(client, big["id"]))["status"] == "waiting"
    assert (await entry(client, held["id"]))["status"] == "waiting"
    assert (await entry(client, third["id"]))["status"] == "booked"
    assert (await entry(client, fourth["id"]))["status"] == "waiting"
    # A capacity raise of 3 seats: the party of three fits now.
    raised = await client.patch(
        f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/14:00", json={"capacity": 5}
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["remaining"] == 0
    assert (await entry(client, big["id"]))["status"] == "booked"
    assert (await entry(client, fourth["id"]))["status"] == "waiting"
    await exact_gate(client)


async def test_a_reopened_day_goes_to_the_waiting_first(catalog: httpx.AsyncClient) -> None:
    client = catalog
    closed = await client.put(
        f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}", json={"reason": "停电"}
    )
    assert closed.status_code == 200, closed.text
    waiting = await join(client, wait_body())
    assert waiting["status"] == "waiting"
    reopened = await client.delete(f"/v1/offices/{OFFICE_ID}/closures/{WEDNESDAY}")
    assert reopened.status_code in (200, 204), reopened.text
    assert (await entry(client, waiting["id"]))["status"] == "booked"
    await exact_gate(client)


async def test_one_waiting_entry_per_identity_and_service(catalog: httpx.AsyncClient) -> None:
    client = catalog
    await fill(client)
    who, member = person(), person()
    first = await join(
        client,
        wait_body(
            who, party_size=2, members=[{k: member[k] for k in ("id_type", "id_number", "name")}]
        ),
    )
    for body in (wait_body(who), wait_body(member)):
        refused = problem(
            await client.post("/v1/waitlist", json=body), 409, "waitlist_entry_exists"
        )
        assert refused["waitlist_id"] == first["id"]
    # Cancelled: it no longer waits, and the person may wait again.
    cancelled = await client.post(f"/v1/waitlist/{first['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/v1/waitlist/{first['id']}/cancel")
    assert (again.status_code, again.json()) == (200, cancelled.json())
    assert (await join(client, wait_body(who)))["status"] == "waiting"


async def test_who_may_wait_and_for_which_days(catalog: httpx.AsyncClient) -> None:
    client = catalog
    holder = person()
    response = await client.post("/v1/bookings", json=booking_body(holder))
    assert response.status_code == 201
    refused = problem(
        await client.post("/v1/waitlist", json=wait_body(holder)), 409, "active_booking_exists"
    )
    assert refused["booking_id"] == response.json()["id"]
    for first, last in (
        ("2026-11-23", WEDNESDAY),  # today: from lies in today + 1 ..
        (WEDNESDAY, TUESDAY),  # from after to
        (WEDNESDAY, "2026-12-08"),  # past the horizon's last day
    ):
        body = wait_body(first=first, last=last)
        problem(await client.post("/v1/waitlist", json=body), 422, "not_bookable")
    problem(await client.get("/v1/waitlist/W23456789ABCDE"), 404, "not_found")
    problem(await client.post("/v1/waitlist/W23456789ABCDE/cancel"), 404, "not_found")


async def test_entries_expire_and_a_booked_one_cannot_be_cancelled(
    catalog: httpx.AsyncClient,
) -> None:
    client = catalog
    made = await fill(client)
    stale = await join(client, wait_body())
    booked = await join(client, wait_body(last="2026-11-26"))
    assert booked["status"] == "booked"  # Thursday has seats
    problem(await client.post(f"/v1/waitlist/{booked['id']}/cancel"), 409, "invalid_state")
    await set_clock(client, "2026-11-26T00:00:00+08:00")
    assert (await run_job(client, "expire-waitlist"))["expired"] == 1
    assert (await entry(client, stale["id"]))["status"] == "expired"
    problem(await client.post(f"/v1/waitlist/{stale['id']}/cancel"), 409, "invalid_state")
    assert (await run_job(client, "expire-waitlist"))["expired"] == 0
    feed, _ = await events(client)
    assert feed[-1]["type"] == "waitlist.expired"
    assert feed[-1]["waitlist"]["status"] == "expired"
    assert made  # the day stayed full until it passed


async def test_an_idempotent_join_replays_its_first_answer(catalog: httpx.AsyncClient) -> None:
    client = catalog
    body = wait_body()
    headers = {"Idempotency-Key": "wait-1"}
    first = await client.post("/v1/waitlist", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/waitlist", json=body, headers=headers)
    assert (again.status_code, again.content) == (201, first.content)
    assert await remaining(client, WEDNESDAY, "09:00") == 2  # booked once
