"""GET /v1/events: every change in commit order, each exactly once across `next` pages."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.steps import book, cancel, events, problem, run_job
from tests.conftest import READER_KEY, TUESDAY, WEDNESDAY, WRITER_KEY, person, set_clock

THURSDAY = "2026-11-26"
FRIDAY = "2026-11-27"
NEXT_MONDAY = "2026-11-30"
EVENT_FIELDS = {"id", "type", "occurred_at", "booking"}


async def cancelled(client: httpx.AsyncClient, booking_id: str) -> dict[str, Any]:
    response = await cancel(client, booking_id)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def read_all(client: httpx.AsyncClient, limit: int, after: str | None = None) -> list[Any]:
    """Follow `next` until a page comes back empty; returns the pages' items."""
    pages: list[Any] = []
    while True:
        items, after = await events(client, after, limit)
        assert len(items) <= limit
        if not items:
            return pages
        pages.append(items)


async def test_every_event_type_in_commit_order_with_its_booking(
    catalog: httpx.AsyncClient,
) -> None:
    a, b, c, d = person(), person(), person(), person()
    expected: list[tuple[str, dict[str, Any], str]] = []  # (type, booking, occurred_at)

    now = "2026-11-23T10:00:00+08:00"
    made_a = await book(catalog, a)
    expected.append(("booking.created", made_a, now))
    made_b = await book(catalog, b, TUESDAY, "14:00")
    expected.append(("booking.created", made_b, now))
    response = await catalog.post(
        f"/v1/bookings/{made_a['id']}/reschedule", json={"date": WEDNESDAY, "start": "09:30"}
    )
    assert response.status_code == 200, response.text
    moved_a = response.json()
    expected.append(("booking.rescheduled", moved_a, now))
    made_c = await book(catalog, c, WEDNESDAY, "14:00")
    expected.append(("booking.created", made_c, now))
    expected.append(("booking.cancelled", await cancelled(catalog, made_c["id"]), now))
    d_made = await book(catalog, d, THURSDAY)
    expected.append(("booking.created", d_made, now))
    expected.append(("booking.cancelled", await cancelled(catalog, d_made["id"]), now))

    now = "2026-11-24T10:00:00+08:00"
    await set_clock(catalog, now)
    d_made = await book(catalog, d, FRIDAY)
    expected.append(("booking.created", d_made, now))
    expected.append(("booking.cancelled", await cancelled(catalog, d_made["id"]), now))

    now = "2026-11-24T13:30:00+08:00"
    await set_clock(catalog, now)
    response = await catalog.post(f"/v1/bookings/{made_b['id']}/check-in")
    assert response.status_code == 200, response.text
    expected.append(("booking.checked_in", response.json(), now))

    now = "2026-11-24T18:00:00+08:00"
    await set_clock(catalog, now)
    assert await run_job(catalog, "send-reminders") == {"reminders": 1}
    expected.append(("booking.reminder", moved_a, now))

    now = "2026-11-25T10:31:00+08:00"
    await set_clock(catalog, now)
    assert (await run_job(catalog, "sweep-no-shows"))["no_shows"] == 1
    missed_a = (await catalog.get(f"/v1/bookings/{made_a['id']}")).json()
    assert missed_a["status"] == "no_show"
    expected.append(("booking.no_show", missed_a, now))
    d_made = await book(catalog, d, NEXT_MONDAY)
    expected.append(("booking.created", d_made, now))
    d_cancelled = await cancelled(catalog, d_made["id"])
    expected.append(("booking.cancelled", d_cancelled, now))
    expected.append(("person.blocked", d_cancelled, now))

    response = await catalog.get("/v1/events", params={"limit": 100})
    assert response.status_code == 200
    for who in (a, b, c, d):
        assert who["id_number"] not in response.text
    items = response.json()["items"]
    assert [(e["type"], e["booking"], e["occurred_at"]) for e in items] == expected
    assert len({e["id"] for e in items}) == len(items)
    for event in items:
        assert EVENT_FIELDS <= event.keys() <= {*EVENT_FIELDS, "person"}
        assert isinstance(event["id"], str)
    blocked = items[-1]
    assert blocked["person"] == {
        "id_type": "passport",
        "id_number_masked": d_cancelled["person"]["id_number_masked"],
        "blocked_until": "2026-11-26T10:31:00+08:00",
    }
    assert {e["type"] for e in items} == {
        "booking.created",
        "booking.cancelled",
        "booking.rescheduled",
        "booking.checked_in",
        "booking.no_show",
        "booking.reminder",
        "person.blocked",
    }


async def test_pages_follow_next_and_show_each_event_once(catalog: httpx.AsyncClient) -> None:
    made = [await book(catalog, start=start) for start in ("09:00", "09:00", "09:30")]
    for booking in made[:2]:
        await cancel(catalog, booking["id"])
    everything, tail = await events(catalog)
    assert len(everything) == 5

    pages = await read_all(catalog, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e for page in pages for e in page] == everything

    # An empty page hands back a cursor that still points at the end.
    items, after = await events(catalog, tail, 2)
    assert (items, after) == ([], tail)

    # New events come after the cursor handed out; nothing seen before comes again.
    late = await book(catalog, start="14:00")
    await cancel(catalog, made[2]["id"])
    newer = [e for page in await read_all(catalog, 1, tail) for e in page]
    assert [(e["type"], e["booking"]["id"]) for e in newer] == [
        ("booking.created", late["id"]),
        ("booking.cancelled", made[2]["id"]),
    ]
    assert {e["id"] for e in newer}.isdisjoint(e["id"] for e in everything)
    whole, _ = await events(catalog)
    assert whole == everything + newer


async def test_an_event_waits_for_every_older_transaction_then_shows_once(
    catalog: httpx.AsyncClient, database_url: str
) -> None:
    """The feed is in commit order: an event shows once no transaction older than its own can
    still commit (any of the cluster's: a late one must land after the cursors handed out)."""
    await book(catalog, start="09:00")
    _, cursor = await events(catalog)
    holder = await asyncpg.connect(database_url)
    try:
        older = holder.transaction()
        await older.start()
        await holder.fetchval("SELECT pg_current_xact_id()")  # an id older than the booking's
        later = await book(catalog, start="09:30")  # committed: its answer says so
        assert await events(catalog, cursor) == ([], cursor)
        await older.commit()
    finally:
        await holder.close()
    shown, after = await events(catalog, cursor)
    assert [(e["type"], e["booking"]["id"]) for e in shown] == [("booking.created", later["id"])]
    assert await events(catalog, after) == ([], after)


async def test_empty_feed(catalog: httpx.AsyncClient) -> None:
    items, after = await events(catalog)
    assert items == []
    again, _ = await events(catalog, after)
    assert again == []


async def test_a_cursor_not_handed_out_is_400(
    catalog: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    await book(catalog)
    too_big = ("9" * 20 + ".1", "1." + "9" * 20)  # beyond xid8 / bigint
    for after in ("abc", "1", "1.", ".1", "-1.2", "1.2.3", "1.x", "9" * 30, *too_big):
        with subtests.test(after):
            response = await catalog.get("/v1/events", params={"after": after})
            problem(response, 400, "invalid_request")


async def test_limit_out_of_bounds_is_400(
    catalog: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    for limit in ("0", "-1", "1001", "x", "1.5", ""):
        with subtests.test(limit):
            response = await catalog.get("/v1/events", params={"limit": limit})
            problem(response, 400, "invalid_request")


async def test_limit_bounds_are_accepted(catalog: httpx.AsyncClient) -> None:
    await book(catalog)
    await book(catalog)
    one, _ = await events(catalog, limit=1)
    assert len(one) == 1
    most, _ = await events(catalog, limit=1000)
    assert len(most) == 2
    response = await catalog.get("/v1/events")
    assert response.status_code == 200
    assert len(response.json()["items"]) == 2


async def test_the_feed_needs_events_read(catalog: httpx.AsyncClient) -> None:
    await book(catalog)
    for key in (READER_KEY, WRITER_KEY):
        response = await catalog.get("/v1/events", headers={"Authorization": f"Bearer {key}"})
        problem(response, 403, "forbidden")
    response = await catalog.get("/v1/events", headers={"Authorization": ""})
    problem(response, 401, "unauthorized")
