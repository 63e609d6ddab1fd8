"""API 1.1 fair release by lottery, black box over HTTP with the test clock: entries from the
evening before a day opens, the draw at the opening instant, its public record verified from
the outside (commitment, ranks, allocation), then first come, first served."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import replace
from typing import Any

import httpx
import redis.asyncio as aioredis

from slots_service.config import Settings
from tests.api.steps import events, overlapping_client, problem, run_job
from tests.conftest import OFFICE, OFFICE_ID, SERVICE_ID, booking_body, person, set_clock

# The office goes into lottery mode at NOW (Mon 2026-11-23 10:00): the horizon's days up to
# Mon 12-07 keep their seats; Tue 12-08 is the first day released by a draw, at its opening
# instant O = Tue 11-24 00:00, with entries from Mon 11-23 18:00.
DAY = "2026-12-08"
ENTRIES_OPEN = "2026-11-23T18:00:00+08:00"
DRAW_AT = "2026-11-24T00:00:00+08:00"
LOTTERY = {**OFFICE, "release": {"mode": "lottery", "entries_open": "18:00", "max_choices": 3}}
# Tuesday's windows (conftest WEEK): 09:00 and 09:30 with 3 seats, 14:00 and 14:30 with 2.
CAPACITY = {"09:00": 3, "09:30": 3, "14:00": 2, "14:30": 2}


async def lottery_office(client: httpx.AsyncClient) -> None:
    response = await client.put(f"/v1/offices/{OFFICE_ID}", json=LOTTERY)
    assert response.status_code == 200, response.text
    assert response.json()["release"] == LOTTERY["release"]


def entry_body(
    who: dict[str, str] | None = None, choices: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "office_id": OFFICE_ID,
        "service_id": SERVICE_ID,
        "date": DAY,
        "choices": ["09:00"] if choices is None else choices,
        "person": who or person(),
        **extra,
    }


async def enter(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/entries", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def release(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(f"/v1/offices/{OFFICE_ID}/releases/{DAY}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def listing(client: httpx.AsyncClient, limit: int = 3) -> list[dict[str, Any]]:
    """The whole draw, page by page."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        response = await client.get(
            f"/v1/offices/{OFFICE_ID}/releases/{DAY}/draw", params={"after": after, "limit": limit}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next"] is None:
            return items
        after = page["next"]


async def availability(client: httpx.AsyncClient, day: str = DAY) -> dict[str, int] | None:
    response = await client.get(
        f"/v1/offices/{OFFICE_ID}/availability",
        params={"service": SERVICE_ID, "from": day, "to": day},
    )
    assert response.status_code == 200, response.text
    days = response.json()["days"]
    if not days:
        return None
    return {w["start"]: w["remaining"] for w in days[0]["windows"]}


def verify(
    seed_hex: str,
    commitment: str,
    drawn: list[dict[str, Any]],
    entries: dict[str, dict[str, Any]],
    capacity: dict[str, int],
) -> None:
    """What anyone can check from the public record and the entries: the seed is the one
    committed to, the ranks follow the HMAC order, and in rank order each entry got the first
    of its choices that still had seats for its party (no rule refused anyone here)."""
    seed = bytes.fromhex(seed_hex)
    assert hashlib.sha256(seed).hexdigest() == commitment
    order = sorted(
        entries, key=lambda i: hmac.new(seed, i.encode("ascii"), hashlib.sha256).hexdigest()
    )
    assert [d["entry_id"] for d in drawn] == order
    assert [d["rank"] for d in drawn] == list(range(1, len(order) + 1))
    left = dict(capacity)
    for item in drawn:
        entry = entries[item["entry_id"]]
        got = next((c for c in entry["choices"] if left[c] >= entry["party_size"]), None)
        assert item["start"] == got, item
        assert item["status"] == ("won" if got else "lost")
        if got is not None:
            left[got] -= entry["party_size"]


async def test_the_whole_release_by_lottery(catalog: httpx.AsyncClient) -> None:
    client = catalog
    await lottery_office(client)
    # Before the entry period: scheduled, nothing committed, entries closed.
    before = await release(client)
    assert before["status"] == "scheduled"
    assert (before["entries_open_at"], before["draw_at"]) == (ENTRIES_OPEN, DRAW_AT)
    assert (before["commitment"], before["seed"]) == (None, None)
    problem(await client.post("/v1/entries", json=entry_body()), 409, "entries_closed")
    # Days already in the horizon when the office switched keep first come, first served.
    problem(await client.get(f"/v1/offices/{OFFICE_ID}/releases/2026-12-07"), 404, "not_found")
    # The entry period.
    await set_clock(client, ENTRIES_OPEN)
    opened = await release(client)
    assert opened["status"] == "taking_entries"
    commitment = opened["commitment"]
    assert len(commitment) == 64
    assert opened["seed"] is None
    entries: dict[str, dict[str, Any]] = {}
    for k in range(9):
        choices = [["09:00", "09:30"], ["14:00"], ["09:30", "14:30", "14:00"]][k % 3]
        made = await enter(client, entry_body(choices=choices, party_size=1 + (k == 4)))
        assert made["status"] == "entered"
        assert made["draw_at"] == DRAW_AT
        assert made["person"]["id_number_masked"].count("*") >= 4
        entries[made["id"]] = made
    # One identity, one entry: repeats answer 409 naming the entry, however often.
    who = person()
    mine = await enter(client, entry_body(who, ["14:30"]))
    entries[mine["id"]] = mine
    for _ in range(5):
        again = problem(await client.post("/v1/entries", json=entry_body(who)), 409, "entry_exists")
        assert again["entry_id"] == mine["id"]
    # A withdrawn entry takes no part.
    gone = await enter(client, entry_body(choices=["09:00"]))
    withdrawn = await client.post(f"/v1/entries/{gone['id']}/withdraw")
    assert withdrawn.status_code == 200
    assert withdrawn.json()["status"] == "withdrawn"
    assert (await client.post(f"/v1/entries/{gone['id']}/withdraw")).json() == withdrawn.json()
    assert (await release(client))["entries"] == len(entries)
    # The day is not in the horizon yet: nobody can book it.
    problem(await client.post("/v1/bookings", json=booking_body(date=DAY)), 422, "not_bookable")
    # The opening instant: the draw is pending until it has run.
    await set_clock(client, DRAW_AT)
    assert (await release(client))["status"] == "drawing"
    pending = problem(
        await client.post("/v1/bookings", json=booking_body(date=DAY)), 409, "draw_pending"
    )
    assert pending["draw_at"] == DRAW_AT
    assert await availability(client) is None
    problem(await client.get(f"/v1/offices/{OFFICE_ID}/releases/{DAY}/draw"), 409, "draw_pending")
    problem(await client.post("/v1/entries", json=entry_body()), 409, "entries_closed")
    result = await run_job(client, "draw-releases")
    assert result["drawn"] == 1
    assert result["entries"] == len(entries)
    assert (await run_job(client, "draw-releases"))["drawn"] == 0  # exactly once
    drawn = await release(client)
    assert drawn["status"] == "drawn"
    assert drawn["commitment"] == commitment
    assert drawn["entries"] == len(entries) == drawn["won"] + drawn["lost"]
    items = await listing(client)
    verify(drawn["seed"], commitment, items, entries, CAPACITY)
    # Every entry's outcome, its booking made as POST /v1/bookings makes it.
    won = 0
    for item in items:
        entry = (await client.get(f"/v1/entries/{item['entry_id']}")).json()
        assert entry["status"] == item["status"]
        if item["status"] == "won":
            won += entry["party_size"]
            made = (await client.get(f"/v1/bookings/{entry['booking_id']}")).json()
            assert (made["date"], made["start"], made["status"]) == (DAY, item["start"], "booked")
            assert made["person"] == entry["person"]
        else:
            assert entry["lost_reason"] == "no_seats"
            assert entry["booking_id"] is None
    assert (await client.get(f"/v1/entries/{gone['id']}")).json()["status"] == "withdrawn"
    problem(await client.post(f"/v1/entries/{items[0]['entry_id']}/withdraw"), 409, "invalid_state")
    # Then first come, first served with the seats left, and the gate agrees with Postgres.
    left = await availability(client)
    assert left is not None
    assert sum(left.values()) == sum(CAPACITY.values()) - won
    if any(left.values()):
        start = next(s for s, n in left.items() if n)
        response = await client.post("/v1/bookings", json=booking_body(date=DAY, start=start))
        assert response.status_code == 201, response.text
    assert (await run_job(client, "reconcile"))["windows_corrected"] == 0
    feed, _ = await events(client)
    kinds = [e["type"] for e in feed]
    assert kinds.count("entry.won") == drawn["won"]
    assert kinds.count("entry.lost") == drawn["lost"]
    won_event = next(e for e in feed if e["type"] == "entry.won")
    assert won_event["entry"]["status"] == "won"
    assert won_event["booking"]["id"] == won_event["entry"]["booking_id"]


async def test_entry_rules(catalog: httpx.AsyncClient) -> None:
    client = catalog
    await lottery_office(client)
    await set_clock(client, ENTRIES_OPEN)
    for choices in ([], ["09:00", "09:00"], ["09:00", "09:30", "14:00", "14:30"], ["10:00"]):
        body = entry_body(choices=choices)
        problem(await client.post("/v1/entries", json=body), 422, "not_bookable")
    too_big = entry_body(party_size=9)
    problem(await client.post("/v1/entries", json=too_big), 422, "not_bookable")
    other_day = {**entry_body(), "date": "2026-12-09"}
    problem(await client.post("/v1/entries", json=other_day), 409, "entries_closed")
    # A member who already entered cannot enter again in another party.
    member = person()
    first = await enter(client, entry_body(party_size=2, members=[_member(member)]))
    again = problem(await client.post("/v1/entries", json=entry_body(member)), 409, "entry_exists")
    assert again["entry_id"] == first["id"]
    assert first["members"][0]["id_number_masked"] != member["id_number"]
    # A person holding a booking of the service cannot enter.
    holder = person()
    booked = await client.post("/v1/bookings", json=booking_body(holder))
    assert booked.status_code == 201, booked.text
    refused = problem(
        await client.post("/v1/entries", json=entry_body(holder)), 409, "active_booking_exists"
    )
    assert refused["booking_id"] == booked.json()["id"]
    problem(await client.get("/v1/entries/E23456789ABCDE"), 404, "not_found")
    # Dates at the calendar's ends are no lottery days (and never a 500).
    for far in ("0001-01-01", "9999-12-31"):
        far_body = {**entry_body(), "date": far}
        problem(await client.post("/v1/entries", json=far_body), 409, "entries_closed")
        problem(await client.get(f"/v1/offices/{OFFICE_ID}/releases/{far}"), 404, "not_found")
        draw_path = f"/v1/offices/{OFFICE_ID}/releases/{far}/draw"
        problem(await client.get(draw_path), 404, "not_found")


async def test_a_party_refused_for_its_member_leaves_the_person_free_to_enter(
    catalog: httpx.AsyncClient, redis_url: str
) -> None:
    """Postgres (the gate's hints lost) refuses a party for its member's entry: the person,
    who holds none, may still enter alone."""
    client = catalog
    await lottery_office(client)
    await set_clock(client, ENTRIES_OPEN)
    who, member = person(), person()
    held = await enter(client, entry_body(member))
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert await redis.delete(f"entries:{{{OFFICE_ID}:{DAY}}}") == 1
    finally:
        await redis.aclose()
    party = entry_body(who, party_size=2, members=[_member(member)])
    for _ in range(2):
        refused = problem(await client.post("/v1/entries", json=party), 409, "entry_exists")
        assert refused["entry_id"] == held["id"]
    alone = await enter(client, entry_body(who))
    assert alone["id"] != held["id"]


async def test_a_withdrawn_identity_may_enter_again(catalog: httpx.AsyncClient) -> None:
    client = catalog
    await lottery_office(client)
    await set_clock(client, ENTRIES_OPEN)
    who = person()
    first = await enter(client, entry_body(who))
    assert (await client.post(f"/v1/entries/{first['id']}/withdraw")).status_code == 200
    second = await enter(client, entry_body(who, ["09:30"]))
    assert second["id"] != first["id"]
    again = problem(await client.post("/v1/entries", json=entry_body(who)), 409, "entry_exists")
    assert again["entry_id"] == second["id"]


def _member(who: dict[str, str]) -> dict[str, str]:
    return {k: who[k] for k in ("id_type", "id_number", "name")}


async def test_an_idempotent_entry_replays_its_first_answer(catalog: httpx.AsyncClient) -> None:
    client = catalog
    await lottery_office(client)
    await set_clock(client, ENTRIES_OPEN)
    body = entry_body()
    headers = {"Idempotency-Key": "entry-1"}
    first = await client.post("/v1/entries", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/entries", json=body, headers=headers)
    assert (again.status_code, again.content) == (201, first.content)


async def test_two_draws_at_once_draw_once(catalog: httpx.AsyncClient, settings: Settings) -> None:
    """Two schedulers (here: two workers' admin jobs) start the same draw at the same moment."""
    client = catalog
    await lottery_office(client)
    await set_clock(client, ENTRIES_OPEN)
    for _ in range(30):
        await enter(client, entry_body(choices=["09:00", "14:00"], waitlist=True))
    await set_clock(client, DRAW_AT)
    async with overlapping_client(replace(settings)) as other:
        results = await asyncio.gather(
            *(c.post("/v1/admin/jobs/draw-releases") for c in (client, other, client, other))
        )
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert sum(r.json()["result"]["drawn"] for r in results) == 1
    items = await listing(client, limit=100)
    assert len(items) == 30
    assert len({i["entry_id"] for i in items}) == 30
    assert sum(i["status"] == "won" for i in items) == 5  # 3 + 2 seats chosen
    # The losers who asked for it waited; the seats the winners left went to them.
    left = await availability(client)
    assert left == {"09:00": 0, "09:30": 0, "14:00": 0, "14:30": 0}
    assert (await run_job(client, "reconcile"))["windows_corrected"] == 0
