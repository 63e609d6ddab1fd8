"""A booking after it is made: cancel, reschedule, check in, no-shows, blocks, reminders.

Time moves only through the test clock (PUT /v1/admin/clock).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import redis.asyncio as aioredis

from slots_service.counters import day_key
from tests.api.steps import (
    book,
    bookings_of,
    cancel,
    events,
    get,
    no_show,
    problem,
    remaining,
    run_job,
    seats,
    standing,
)
from tests.conftest import (
    CHECKIN_KEY,
    OFFICE_ID,
    READER_KEY,
    SERVICE,
    SERVICE_ID,
    TUESDAY,
    WEDNESDAY,
    WRITER_KEY,
    booking_body,
    person,
    set_clock,
)

THURSDAY = "2026-11-26"
FRIDAY = "2026-11-27"
NEXT_MONDAY = "2026-11-30"
CHECKIN = {"Authorization": f"Bearer {CHECKIN_KEY}"}


async def check_in(client: httpx.AsyncClient, booking_id: str) -> httpx.Response:
    return await client.post(f"/v1/bookings/{booking_id}/check-in", headers=CHECKIN)


async def reschedule(
    client: httpx.AsyncClient, booking_id: str, date: str, start: str
) -> httpx.Response:
    return await client.post(
        f"/v1/bookings/{booking_id}/reschedule", json={"date": date, "start": start}
    )


async def unblock(client: httpx.AsyncClient, who: dict[str, str]) -> httpx.Response:
    return await client.post(
        "/v1/people/unblock",
        json={"id_type": who["id_type"], "id_number": who["id_number"], "reason": "appeal"},
    )


async def feed_of(client: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    items, _ = await events(client)
    return [e for e in items if e["type"] == kind]


# ---------------------------------------------------------------- cancel


async def test_person_cancels_before_the_cutoff_and_the_seats_are_free_at_once(
    catalog: httpx.AsyncClient,
) -> None:
    holders = [await book(catalog, date=TUESDAY, start="14:00") for _ in range(2)]
    assert await remaining(catalog, TUESDAY, "14:00") == 0
    problem(
        await catalog.post("/v1/bookings", json=booking_body(date=TUESDAY, start="14:00")),
        409,
        "slot_full",
    )
    # Monday 17:59: the deadline of a Tuesday booking is Monday 18:00.
    await set_clock(catalog, "2026-11-23T17:59:00+08:00")
    response = await cancel(catalog, holders[0]["id"], reason="fell ill")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["id"] == holders[0]["id"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_by"] == "person"
    assert cancelled["cancel_reason"] == "fell ill"
    assert cancelled["cancelled_at"] == "2026-11-23T17:59:00+08:00"
    assert await get(catalog, holders[0]["id"]) == cancelled
    assert await remaining(catalog, TUESDAY, "14:00") == 1
    newcomer = await book(catalog, date=TUESDAY, start="14:00")
    assert newcomer["status"] == "booked"
    assert await remaining(catalog, TUESDAY, "14:00") == 0


async def test_person_cancel_after_the_cutoff_is_refused_and_changes_nothing(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    await set_clock(catalog, "2026-11-24T18:01:00+08:00")
    before = await seats(catalog)
    found = problem(await cancel(catalog, made["id"]), 409, "cancel_cutoff_passed")
    assert found["cancel_deadline"] == "2026-11-24T18:00:00+08:00"
    assert await get(catalog, made["id"]) == made
    assert await seats(catalog) == before


async def test_person_may_cancel_at_the_deadline_itself(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    await set_clock(catalog, "2026-11-24T18:00:00+08:00")
    response = await cancel(catalog, made["id"])
    assert response.status_code == 200, response.text


async def test_office_may_cancel_after_the_cutoff(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    await set_clock(catalog, "2026-11-24T18:01:00+08:00")
    response = await cancel(catalog, made["id"], by="office", reason="staff shortage")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_by"] == "office"
    assert response.json()["cancel_reason"] == "staff shortage"
    assert await remaining(catalog, WEDNESDAY, "09:00") == 3


async def test_hours_before_and_no_cutoff(catalog: httpx.AsyncClient) -> None:
    service = {**SERVICE, "cancel_cutoff": {"kind": "hours_before", "hours": 2}}
    assert (await catalog.put(f"/v1/services/{SERVICE_ID}", json=service)).status_code == 200
    made = await book(catalog, start="14:00")
    assert made["cancel_deadline"] == "2026-11-25T12:00:00+08:00"
    await set_clock(catalog, "2026-11-25T12:01:00+08:00")
    found = problem(await cancel(catalog, made["id"]), 409, "cancel_cutoff_passed")
    assert found["cancel_deadline"] == "2026-11-25T12:00:00+08:00"

    service = {**SERVICE, "cancel_cutoff": {"kind": "none"}}
    assert (await catalog.put(f"/v1/services/{SERVICE_ID}", json=service)).status_code == 200
    loose = await book(catalog, date=THURSDAY, start="09:00")
    assert loose["cancel_deadline"] is None
    await set_clock(catalog, "2026-11-26T08:59:00+08:00")
    assert (await cancel(catalog, loose["id"])).status_code == 200


async def test_cancelling_twice_returns_the_booking_unchanged(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    first = await cancel(catalog, made["id"])
    assert first.status_code == 200
    await set_clock(catalog, "2026-11-23T11:00:00+08:00")
    again = await cancel(catalog, made["id"], by="office", reason="other words")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert await remaining(catalog, WEDNESDAY, "09:00") == 3
    assert len(await feed_of(catalog, "booking.cancelled")) == 1


async def test_cancel_of_checked_in_or_no_show_is_invalid_state(
    catalog: httpx.AsyncClient,
) -> None:
    arrived = await book(catalog)
    missed = await book(catalog, start="09:30")
    await set_clock(catalog, "2026-11-25T08:30:00+08:00")
    assert (await check_in(catalog, arrived["id"])).status_code == 200
    await set_clock(catalog, "2026-11-25T10:31:00+08:00")
    assert (await run_job(catalog, "sweep-no-shows"))["no_shows"] == 1
    for booking_id, status in ((arrived["id"], "checked_in"), (missed["id"], "no_show")):
        before = await get(catalog, booking_id)
        assert before["status"] == status
        for by in ("person", "office"):
            problem(await cancel(catalog, booking_id, by=by), 409, "invalid_state")
        assert await get(catalog, booking_id) == before


async def test_cancel_unknown_booking_or_bad_body(catalog: httpx.AsyncClient) -> None:
    problem(await cancel(catalog, "ZZZZZZZZZZZZ"), 404, "not_found")
    made = await book(catalog)
    for body in ({"by": "someone"}, {"reason": "x"}, {"by": "person", "extra": 1}):
        response = await catalog.post(f"/v1/bookings/{made['id']}/cancel", json=body)
        problem(response, 400, "invalid_request")
    reader = await catalog.post(
        f"/v1/bookings/{made['id']}/cancel",
        json={"by": "person"},
        headers={"Authorization": f"Bearer {READER_KEY}"},
    )
    problem(reader, 403, "forbidden")
    assert (await get(catalog, made["id"]))["status"] == "booked"


# ---------------------------------------------------------------- reschedule


async def test_reschedule_keeps_the_id_and_moves_the_seats(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, party_size=2, reference="R-1", metadata={"k": "v"})
    response = await reschedule(catalog, made["id"], THURSDAY, "14:30")
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["id"] == made["id"]
    assert moved["status"] == "booked"
    assert (moved["date"], moved["start"], moved["end"]) == (THURSDAY, "14:30", "15:00")
    assert moved["starts_at"] == "2026-11-26T14:30:00+08:00"
    assert moved["ends_at"] == "2026-11-26T15:00:00+08:00"
    assert moved["cancel_deadline"] == "2026-11-25T18:00:00+08:00"
    unchanged = ("party_size", "person", "reference", "metadata", "created_at", "channel")
    assert {k: moved[k] for k in unchanged} == {k: made[k] for k in unchanged}
    assert await get(catalog, made["id"]) == moved
    assert await remaining(catalog, WEDNESDAY, "09:00") == 3
    assert await remaining(catalog, THURSDAY, "14:30") == 0
    # The freed seats can be taken by someone else.
    await book(catalog, party_size=3)
    rescheduled = await feed_of(catalog, "booking.rescheduled")
    assert [e["booking"] for e in rescheduled] == [moved]


async def test_reschedule_into_a_full_window_changes_nothing(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    await book(catalog, date=THURSDAY, start="14:00", party_size=2)
    before = await seats(catalog)
    problem(await reschedule(catalog, made["id"], THURSDAY, "14:00"), 409, "slot_full")
    assert await get(catalog, made["id"]) == made
    assert await seats(catalog) == before
    assert await feed_of(catalog, "booking.rescheduled") == []


async def test_reschedule_of_a_group_needs_all_its_seats(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog, party_size=3)
    before = await seats(catalog)
    problem(await reschedule(catalog, made["id"], THURSDAY, "14:00"), 409, "slot_full")
    assert await seats(catalog) == before
    assert await get(catalog, made["id"]) == made


async def test_reschedule_to_an_invalid_window_is_not_bookable(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    before = await seats(catalog)
    for date, start in (
        (THURSDAY, "09:10"),
        ("2026-11-28", "09:00"),
        ("2026-11-23", "14:00"),
        ("2026-12-08", "09:00"),
    ):
        problem(await reschedule(catalog, made["id"], date, start), 422, "not_bookable")
    for body in ({"date": THURSDAY}, {"date": THURSDAY, "start": "9:00"}, {"start": "09:00"}):
        response = await catalog.post(f"/v1/bookings/{made['id']}/reschedule", json=body)
        problem(response, 400, "invalid_request")
    assert await get(catalog, made["id"]) == made
    assert await seats(catalog) == before


async def test_reschedule_of_a_cancelled_booking_is_invalid_state(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    cancelled = (await cancel(catalog, made["id"])).json()
    before = await seats(catalog)
    problem(await reschedule(catalog, made["id"], THURSDAY, "09:00"), 409, "invalid_state")
    assert await get(catalog, made["id"]) == cancelled
    assert await seats(catalog) == before
    problem(await reschedule(catalog, "ZZZZZZZZZZZZ", THURSDAY, "09:00"), 404, "not_found")


# ---------------------------------------------------------------- check-in


async def test_check_in_needs_the_checkin_scope(catalog: httpx.AsyncClient) -> None:
    made = await book(catalog)
    await set_clock(catalog, "2026-11-25T08:30:00+08:00")
    url = f"/v1/bookings/{made['id']}/check-in"
    for key in (READER_KEY, WRITER_KEY):
        response = await catalog.post(url, headers={"Authorization": f"Bearer {key}"})
        problem(response, 403, "forbidden")
    assert (await get(catalog, made["id"]))["status"] == "booked"
    response = await check_in(catalog, made["id"])
    assert response.status_code == 200, response.text


async def test_check_in_from_60_minutes_before_until_the_window_ends(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    await set_clock(catalog, "2026-11-25T07:59:00+08:00")
    problem(await check_in(catalog, made["id"]), 409, "invalid_state")
    assert await get(catalog, made["id"]) == made
    await set_clock(catalog, "2026-11-25T08:00:00+08:00")
    response = await check_in(catalog, made["id"])
    assert response.status_code == 200, response.text
    arrived = response.json()
    assert arrived["status"] == "checked_in"
    assert arrived["checked_in_at"] == "2026-11-25T08:00:00+08:00"
    assert arrived["ticket"] == "A001"
    assert await get(catalog, made["id"]) == arrived


async def test_check_in_after_the_window_ended_is_invalid_state(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog, start="14:00")
    await set_clock(catalog, "2026-11-25T14:30:00+08:00")
    late = await book(catalog, date=THURSDAY, start="09:00")
    assert (await check_in(catalog, made["id"])).status_code == 200
    await set_clock(catalog, "2026-11-26T09:31:00+08:00")
    problem(await check_in(catalog, late["id"]), 409, "invalid_state")
    assert await get(catalog, late["id"]) == late


async def test_tickets_count_per_office_and_day_in_check_in_order(
    catalog: httpx.AsyncClient,
) -> None:
    early = await book(catalog, start="09:30")
    later = await book(catalog, start="09:00")
    await set_clock(catalog, "2026-11-24T10:00:00+08:00")
    next_day = await book(catalog, date=THURSDAY)
    await set_clock(catalog, "2026-11-25T08:40:00+08:00")
    assert (await check_in(catalog, early["id"])).json()["ticket"] == "A001"
    await set_clock(catalog, "2026-11-25T08:50:00+08:00")
    assert (await check_in(catalog, later["id"])).json()["ticket"] == "A002"
    await set_clock(catalog, "2026-11-26T08:50:00+08:00")
    assert (await check_in(catalog, next_day["id"])).json()["ticket"] == "A001"
    assert [(await get(catalog, b["id"]))["ticket"] for b in (early, later, next_day)] == [
        "A001",
        "A002",
        "A001",
    ]


async def test_check_in_of_a_cancelled_booking_is_invalid_state(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    cancelled = (await cancel(catalog, made["id"])).json()
    await set_clock(catalog, "2026-11-25T08:30:00+08:00")
    problem(await check_in(catalog, made["id"]), 409, "invalid_state")
    assert await get(catalog, made["id"]) == cancelled
    response = await catalog.post("/v1/bookings/ZZZZZZZZZZZZ/check-in", headers=CHECKIN)
    problem(response, 404, "not_found")


# ---------------------------------------------------------------- no-shows and blocks


async def test_still_booked_30_minutes_after_the_window_is_a_no_show(
    catalog: httpx.AsyncClient,
) -> None:
    made = await book(catalog)
    arrived = await book(catalog, start="09:30")
    await set_clock(catalog, "2026-11-25T09:35:00+08:00")
    assert (await check_in(catalog, arrived["id"])).status_code == 200
    await set_clock(catalog, "2026-11-25T09:59:00+08:00")
    assert (await run_job(catalog, "sweep-no-shows"))["no_shows"] == 0
    assert (await get(catalog, made["id"]))["status"] == "booked"
    await set_clock(catalog, "2026-11-25T10:01:00+08:00")
    assert await run_job(catalog, "sweep-no-shows") == {"no_shows": 1, "people_blocked": 0}
    missed = await get(catalog, made["id"])
    assert missed["status"] == "no_show"
    assert (await get(catalog, arrived["id"]))["status"] == "checked_in"
    assert [e["booking"] for e in await feed_of(catalog, "booking.no_show")] == [missed]
    # A second sweep finds nothing new.
    assert (await run_job(catalog, "sweep-no-shows"))["no_shows"] == 0
    assert len(await feed_of(catalog, "booking.no_show")) == 1


async def test_three_no_shows_block_the_person_until_an_unblock(
    catalog: httpx.AsyncClient,
) -> None:
    who = person()
    await no_show(catalog, who, TUESDAY, "2026-11-24T10:01:00+08:00")
    await no_show(catalog, who, WEDNESDAY, "2026-11-25T10:01:00+08:00")
    assert (await standing(catalog, who))["no_shows"] == 2
    last = await book(catalog, who, THURSDAY)
    await set_clock(catalog, "2026-11-26T10:01:00+08:00")
    assert await run_job(catalog, "sweep-no-shows") == {"no_shows": 1, "people_blocked": 1}
    until = (datetime.fromisoformat(last["starts_at"]) + timedelta(days=180)).isoformat()
    assert until == "2027-05-25T09:00:00+08:00"

    before = await seats(catalog)
    had = await bookings_of(catalog, who)
    response = await catalog.post("/v1/bookings", json=booking_body(who, FRIDAY))
    assert problem(response, 403, "person_blocked")["blocked_until"] == until
    assert await seats(catalog) == before
    assert await bookings_of(catalog, who) == had
    assert await standing(catalog, who) == {
        "no_shows": 3,
        "cancellations": 0,
        "blocked_until": until,
        "active_bookings": [],
    }
    blocked = await feed_of(catalog, "person.blocked")
    assert len(blocked) == 1
    assert blocked[0]["booking"]["id"] == last["id"]

    # Only an admin lifts a block.
    problem(
        await catalog.post(
            "/v1/people/unblock",
            json={"id_type": who["id_type"], "id_number": who["id_number"]},
            headers={"Authorization": f"Bearer {WRITER_KEY}"},
        ),
        403,
        "forbidden",
    )
    response = await unblock(catalog, who)
    assert response.status_code == 200, response.text
    assert response.json()["blocked_until"] is None
    assert (await standing(catalog, who))["blocked_until"] is None
    await book(catalog, who, FRIDAY)


async def test_unblock_of_an_unknown_person_is_404(catalog: httpx.AsyncClient) -> None:
    problem(await unblock(catalog, person()), 404, "not_found")


async def test_three_person_cancellations_block_for_24_hours(catalog: httpx.AsyncClient) -> None:
    who = person()
    for today, day in (
        ("2026-11-23T10:00:00+08:00", WEDNESDAY),
        ("2026-11-24T10:00:00+08:00", THURSDAY),
        ("2026-11-25T10:00:00+08:00", FRIDAY),
    ):
        await set_clock(catalog, today)
        made = await book(catalog, who, day)
        assert (await cancel(catalog, made["id"])).status_code == 200
    until = "2026-11-26T10:00:00+08:00"
    assert await standing(catalog, who) == {
        "no_shows": 0,
        "cancellations": 3,
        "blocked_until": until,
        "active_bookings": [],
    }
    response = await catalog.post("/v1/bookings", json=booking_body(who, NEXT_MONDAY))
    assert problem(response, 403, "person_blocked")["blocked_until"] == until
    await set_clock(catalog, "2026-11-26T09:59:00+08:00")
    response = await catalog.post("/v1/bookings", json=booking_body(who, NEXT_MONDAY))
    assert problem(response, 403, "person_blocked")["blocked_until"] == until
    assert await remaining(catalog, NEXT_MONDAY, "09:00") == 3
    assert [b["status"] for b in await bookings_of(catalog, who)] == ["cancelled"] * 3
    # 24 hours after the third cancellation the block is over.
    await set_clock(catalog, "2026-11-26T10:01:00+08:00")
    assert (await standing(catalog, who))["blocked_until"] is None
    await book(catalog, who, NEXT_MONDAY)


async def test_office_cancellations_do_not_count_towards_a_block(
    catalog: httpx.AsyncClient,
) -> None:
    who = person()
    for today, day in (
        ("2026-11-23T10:00:00+08:00", WEDNESDAY),
        ("2026-11-24T10:00:00+08:00", THURSDAY),
        ("2026-11-25T10:00:00+08:00", FRIDAY),
    ):
        await set_clock(catalog, today)
        made = await book(catalog, who, day)
        assert (await cancel(catalog, made["id"], by="office")).status_code == 200
    assert (await standing(catalog, who))["cancellations"] == 0
    await set_clock(catalog, "2026-11-26T10:00:00+08:00")
    await book(catalog, who, NEXT_MONDAY)


# ---------------------------------------------------------------- reminders


async def test_reminders_at_18_00_the_day_before_once_per_booking(
    catalog: httpx.AsyncClient,
) -> None:
    wednesday = [await book(catalog), await book(catalog, start="14:00")]
    dropped = await book(catalog, start="09:30")
    assert (await cancel(catalog, dropped["id"])).status_code == 200
    thursday = await book(catalog, date=THURSDAY)
    await set_clock(catalog, "2026-11-24T17:59:00+08:00")
    assert await run_job(catalog, "send-reminders") == {"reminders": 0}
    assert await feed_of(catalog, "booking.reminder") == []
    await set_clock(catalog, "2026-11-24T18:00:00+08:00")
    assert await run_job(catalog, "send-reminders") == {"reminders": 2}
    reminded = await feed_of(catalog, "booking.reminder")
    assert sorted(e["booking"]["id"] for e in reminded) == sorted(b["id"] for b in wednesday)
    assert all(e["occurred_at"] == "2026-11-24T18:00:00+08:00" for e in reminded)
    await set_clock(catalog, "2026-11-24T18:05:00+08:00")
    assert await run_job(catalog, "send-reminders") == {"reminders": 0}
    assert len(await feed_of(catalog, "booking.reminder")) == 2
    # Thursday's turn comes on Wednesday evening.
    await set_clock(catalog, "2026-11-25T18:00:00+08:00")
    assert await run_job(catalog, "send-reminders") == {"reminders": 1}
    assert (await feed_of(catalog, "booking.reminder"))[-1]["booking"]["id"] == thursday["id"]


async def test_seats_freed_in_a_window_kept_over_capacity_are_not_handed_out(
    catalog: httpx.AsyncClient, redis_url: str
) -> None:
    """An admin lowered the capacity below the seats sold: a cancellation there frees no seat
    until the window is under capacity again, at the gate as in Postgres."""
    first, second = (
        await book(catalog, date=WEDNESDAY, start="14:00"),
        await book(catalog, date=WEDNESDAY, start="14:00"),
    )
    lowered = await catalog.patch(
        f"/v1/offices/{OFFICE_ID}/windows/{WEDNESDAY}/14:00", json={"capacity": 1}
    )
    assert lowered.status_code == 200, lowered.text
    redis = aioredis.Redis.from_url(redis_url)
    key = day_key(OFFICE_ID, datetime.fromisoformat(WEDNESDAY).date())
    try:
        assert (await cancel(catalog, first["id"], by="office")).status_code == 200
        assert await remaining(catalog, WEDNESDAY, "14:00") == 0
        assert int(await redis.hget(key, "14:00") or -1) == 0
        refused = await catalog.post(
            "/v1/bookings", json=booking_body(date=WEDNESDAY, start="14:00")
        )
        problem(refused, 409, "slot_full")
        assert (await cancel(catalog, second["id"], by="office")).status_code == 200
        assert await remaining(catalog, WEDNESDAY, "14:00") == 1
        assert int(await redis.hget(key, "14:00") or -1) == 1
    finally:
        await redis.aclose()
