"""The events feed and the webhook sender stay exact when transaction ids gain a digit.

The feed is ordered by the events' transaction id (xid8). Ordered by its text form, "1000"
sorts before "999", and a page that straddles 999 -> 1000 skips whatever lies between its
last item and the cursor it hands out. Transaction ids belong to the whole Postgres cluster,
so this test burns them (a DO block committing in a loop: ~500k per second) up to just below
the next powers of ten, then writes events through the app at every transaction id across
each boundary, some of them several in one transaction (a closure cancels a day's bookings).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import asyncpg
import httpx

from slots_service.config import Settings
from tests.api.steps import book, cancel, events
from tests.conftest import OFFICE_ID, person
from tests.integration.helpers import WebhookReceiver, webhook_sender

SECRET = "xid-webhook-secret"
PAGE_SIZES = (1, 3, 7, 50, 1000)
# Weekdays in the horizon of conftest.NOW (Mon 2026-11-23 10:00): two closed per boundary,
# one where bookings come and go.
CLOSED_DAYS = ("2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27")
CHURN_DAY = "2026-12-01"
SPAN = 12  # transaction ids written on each side of a boundary


async def next_xid(conn: asyncpg.Connection) -> int:
    """The transaction id the next writing transaction gets (reading it uses none)."""
    return int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))


async def burn_to(conn: asyncpg.Connection, target: int) -> None:
    """Use up transaction ids until the next one handed out is (about) `target`."""
    count = target - await next_xid(conn)
    assert count >= 0, "already past the target"
    if count:
        await conn.execute(
            f"DO $$ BEGIN FOR i IN 1..{count} LOOP PERFORM pg_current_xact_id(); COMMIT; "
            "END LOOP; END $$"
        )
    assert target <= await next_xid(conn) <= target + 2  # autovacuum may take one meanwhile


def boundaries(start: int) -> list[int]:
    """The next two powers of ten that leave room for SPAN ids below them (the second only
    while burning up to it stays cheap, should earlier tests have used many ids)."""
    found = [10**k for k in range(3, 19) if 10**k - SPAN > start][:2]
    return [b for i, b in enumerate(found) if i == 0 or b - start <= 2_000_000]


async def read_feed(
    client: httpx.AsyncClient, limit: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """Follow `next` from the start until a page comes back empty: (items, cursor xids)."""
    items: list[dict[str, Any]] = []
    cursor_xids: list[int] = []
    after: str | None = None
    while True:
        page, cursor = await events(client, after, limit)
        assert len(page) <= limit
        if not page:
            assert cursor == after or after is None
            return items, cursor_xids
        items += page
        cursor_xids.append(int(cursor.partition(".")[0]))
        assert cursor.partition(".")[2] == page[-1]["id"], "next points at the page's last event"
        after = cursor


async def test_feed_and_webhooks_are_exact_across_xid_digit_boundaries(
    catalog: httpx.AsyncClient, settings: Settings, database_url: str
) -> None:
    client = catalog
    conn = await asyncpg.connect(database_url)
    lock = await asyncpg.connect(database_url)
    written: list[tuple[str, str]] = []  # (type, booking id) of every change made here
    closed: list[str] = []  # the bookings closures cancel
    try:
        receiver = WebhookReceiver()
        async with webhook_sender(settings, receiver, SECRET):
            # Two bookings on each day that a closure will cancel in one transaction.
            for day in CLOSED_DAYS:
                for _ in range(2):
                    made = await book(client, person(), day, "09:00")
                    written.append(("booking.created", made["id"]))
                    closed.append(made["id"])
            made = await book(client, person(), CHURN_DAY, "09:00")  # opens that day too
            written.append(("booking.created", made["id"]))
            churned = [made["id"]]
            marks = boundaries(await next_xid(conn))
            assert marks, "no power of ten within reach"
            closures = iter(CLOSED_DAYS)
            for mark in marks:
                # While ids are placed one by one, the sender may read the feed but not write
                # its cursor (a lock wait uses no transaction id), so no id goes astray.
                async with lock.transaction():
                    await lock.execute("LOCK TABLE webhook_cursor IN SHARE MODE")
                    await burn_to(conn, mark - SPAN)
                    # A closure (several events, one id) at mark - 2 and at mark + 1.
                    pending = {mark - 2: next(closures), mark + 1: next(closures)}
                    while (xid := await next_xid(conn)) < mark + SPAN:
                        if pending and xid >= min(pending):
                            day = pending.pop(min(pending))
                            response = await client.put(
                                f"/v1/offices/{OFFICE_ID}/closures/{day}", json={"reason": "xid"}
                            )
                            assert response.status_code == 200, response.text
                            assert response.json()["cancelled_bookings"] == 2
                        elif churned:
                            by = "office" if len(written) % 4 else "person"
                            response = await cancel(client, churned.pop(), by=by)
                            assert response.status_code == 200, response.text
                            written.append(("booking.cancelled", response.json()["id"]))
                        else:
                            made = await book(client, person(), CHURN_DAY, "09:00")
                            churned.append(made["id"])
                            written.append(("booking.created", made["id"]))
                    assert not pending, "a closure missed its transaction id"
            truth = [
                (str(r["id"]), int(r["x"]))
                for r in await conn.fetch(
                    "SELECT id, xid::text AS x FROM events ORDER BY events.xid, id"
                )
            ]
            # Every feed reader must get exactly these, in this order.
            for limit in PAGE_SIZES:
                items, cursor_xids = await read_feed(client, limit)
                assert [e["id"] for e in items] == [i for i, _ in truth], f"limit={limit}"
                assert cursor_xids == sorted(cursor_xids), f"limit={limit}"
            feed, _ = await events(client, limit=1000)
            for _ in range(300):  # the sender polls once a second when it has caught up
                if {json.loads(b)["id"] for _, b in receiver.received} >= {e["id"] for e in feed}:
                    break
                await asyncio.sleep(0.05)
    finally:
        await conn.close()
        await lock.close()

    # The premise: events on every side of each boundary, several in one transaction on both.
    by_xid: dict[int, int] = {}
    for _, xid in truth:
        by_xid[xid] = by_xid.get(xid, 0) + 1
    for mark in marks:
        below = {x: n for x, n in by_xid.items() if mark - SPAN <= x < mark}
        above = {x: n for x, n in by_xid.items() if mark <= x < mark + SPAN}
        for side in (below, above):
            assert len(side) >= SPAN - 2, (mark, by_xid)
            assert max(side.values()) == 2, (mark, by_xid)
    assert len(feed) == len(truth)

    # The feed carries each change made here once, with its type.
    assert sorted((e["type"], e["booking"]["id"]) for e in feed) == sorted(
        [*written, *(("booking.cancelled", i) for i in closed)]
    )

    # Webhooks: every event, signed, none missing; first deliveries in feed order (a
    # redelivery after a failure may repeat some, never skip one).
    firsts: list[dict[str, Any]] = []
    seen: set[str] = set()
    for headers, raw in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["x-slots-signature"] == expected
        body = json.loads(raw)
        assert headers["x-slots-event-id"] == body["id"]
        if body["id"] not in seen:
            seen.add(body["id"])
            firsts.append(body)
    assert [e["id"] for e in firsts] == [i for i, _ in truth]
    assert firsts == feed
