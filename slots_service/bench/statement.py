"""`book-sql`: Postgres's side of `book` alone, run in its own process like the load generator.

The same statement (queries.sql `book`), with the values a booking of a new person gives it,
sent by the same group commit (group_commit.py, the API's batch size and batches in flight)
from `concurrency` callers, each booking again as soon as its booking was committed: what the
API's bookings cost Postgres with no HTTP, no Redis and none of the API's Python around them.
It says how much of L_pg the rules' statement itself leaves (its reads, the person, the
booking, its event), and so how much of that is left for the rest of the booking path.

It reads its spec as JSON on stdin and prints its result as one JSON line, in the load
generator's shape (a booking committed counts as a "201", a refusal by its verdict).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter, process_time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from .. import people
from ..book_params import BookParams, book_args
from ..booking import distinct, new_booking_id
from ..config import Settings
from ..db import create_pool, queries
from ..group_commit import GroupCommit
from ..models import BookingOut, PersonOut
from ..render import event_payload, hhmm, instant
from .loadgen import latency_summary, person
from .procs import child_main


class Window(NamedTuple):
    """A window of the office, as the statement names it."""

    day: date
    start: time
    end: time
    starts_at: datetime
    ends_at: datetime


def spec_of(
    settings: Settings, office_id: str, timezone: str, service_id: str, **run: Any
) -> dict[str, Any]:
    """The spec for `settings` (the API's: its pool, rules and batching) booking `office_id`;
    `run` gives `tag`, `first_person`, `concurrency`, `warmup` and `seconds`."""
    return {
        "database_url": settings.database_url,
        "pool_size": settings.db_pool_size,
        "office_id": office_id,
        "timezone": timezone,
        "service_id": service_id,
        "pii_key": settings.pii_key.get(),
        "one_phone_per_identity": settings.one_phone_per_identity,
        "bookings_per_day": settings.bookings_per_day,
        "active_per_service": settings.active_bookings_per_service,
        "rebook_cooldown": settings.rebook_cooldown_minutes,
        "batch_max": settings.book_batch_max,
        "in_flight": settings.book_batch_in_flight,
        **run,
    }


def booking_params(spec: Mapping[str, Any], window: Window, n: int, now: datetime) -> BookParams:
    """The statement's values for the bench's n-th person booking `window`, as booking.py
    gives them for a person alone with no Idempotency-Key."""
    tz = ZoneInfo(spec["timezone"])
    key, office, service = spec["pii_key"], spec["office_id"], spec["service_id"]
    id_number, phone = person(int(spec["first_person"]) + n, int(spec["tag"]))
    deadline = window.starts_at - timedelta(days=1)
    masked = people.mask(id_number)
    who = PersonOut(id_type="passport", id_number_masked=masked, name="BENCH PERSON")
    out = BookingOut(
        id=new_booking_id(),
        status="booked",
        office_id=office,
        service_id=service,
        date=window.day.isoformat(),
        start=hhmm(window.start),
        end=hhmm(window.end),
        starts_at=instant(window.starts_at, tz) or "",
        ends_at=instant(window.ends_at, tz) or "",
        party_size=1,
        person=who,
        channel="web",
        reference=None,
        metadata={},
        created_at=instant(now, tz) or "",
        cancel_deadline=instant(deadline, tz),
        cancelled_at=None,
        cancelled_by=None,
        cancel_reason=None,
        checked_in_at=None,
        ticket=None,
        members=[],
    )
    return BookParams(
        office_id=office,
        day=window.day,
        start_time=window.start,
        end_time=window.end,
        party_size=1,
        id_hmac=people.identity_hmac(key, "passport", id_number),
        id_type="passport",
        id_masked=masked,
        phone_hmac=people.phone_hmac(key, phone) if spec["one_phone_per_identity"] else None,
        booking_id=out.id,
        service_id=service,
        name=who.name,
        channel=out.channel,
        reference=None,
        metadata={},
        made_on=now.astimezone(tz).date(),
        bookings_per_day=int(spec["bookings_per_day"]),
        active_per_service=int(spec["active_per_service"]),
        now=now,
        cancel_deadline=deadline,
        event_payload=msgspec.Raw(event_payload(out)),
        api_key_hash=None,
        idempotency_key=None,
        response=None,
        claim_token=None,
        rebook_cooldown=int(spec["rebook_cooldown"]),
        notice_accepted=False,
    )


async def drive(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`concurrency` callers booking the office's windows in turn for `warmup` then `seconds`."""
    pool = await create_pool(spec["database_url"], int(spec["pool_size"]))
    try:
        rows = await pool.fetch(
            "SELECT day, start_time, end_time, starts_at, ends_at FROM windows"
            " WHERE office_id = $1 AND NOT closed AND booked < capacity ORDER BY day, start_time",
            spec["office_id"],
        )
        windows = [Window(*row) for row in rows]
        if not windows:
            raise RuntimeError(f"{spec['office_id']} has no window open to book")
        batches = GroupCommit(
            pool, queries["book"], int(spec["batch_max"]), int(spec["in_flight"]), book_args
        )
        phase = 0  # 0 warm-up, 1 measured, 2 done
        measured: Counter[str] = Counter()
        everything: Counter[str] = Counter()
        latencies: list[float] = []
        next_n = 0

        async def caller() -> None:
            nonlocal next_n
            while phase < 2:
                n, next_n = next_n, next_n + 1
                window = windows[n % len(windows)]
                params = booking_params(spec, window, n, datetime.now(UTC))
                sent = perf_counter()
                row = await batches.decide(
                    (spec["office_id"], window.day, window.start), distinct(params), params
                )
                if row is None:  # its batch rolled back whole: the API decides it alone
                    label = "rolled back"
                elif row["booking_id"] is not None:
                    label = "201"
                elif row["verdict"] == "ok":  # the rules let it, the window had no seat left
                    label = "409 slot_full"
                else:
                    label = f"refused {row['verdict']}"
                everything[label] += 1
                if phase == 1:
                    measured[label] += 1
                    latencies.append(perf_counter() - sent)

        tasks = [asyncio.create_task(caller()) for _ in range(int(spec["concurrency"]))]
        await asyncio.sleep(float(spec["warmup"]))
        phase, t0 = 1, perf_counter()
        await asyncio.sleep(float(spec["seconds"]))
        phase, t1 = 2, perf_counter()
        await asyncio.gather(*tasks)
        await batches.finish()
    finally:
        await pool.close()
    count = sum(measured.values())
    return {
        "seconds": round(t1 - t0, 3),
        "requests": count,
        "rps": round(count / (t1 - t0), 1),
        "statuses": dict(measured.most_common()),
        "statuses_all": dict(everything.most_common()),
        "latency_ms": latency_summary(latencies),
        "created_all": everything["201"],
        "persons": next_n,
        "conn_errors": 0,
        "abandoned": 0,
        "cpu_s": round(process_time(), 3),
    }


def main() -> int:
    """Read a spec as JSON on stdin, run it, print the result as one JSON line.

    The spec: `database_url`, `pool_size`, `office_id` (every open window of it is booked in
    turn), `timezone` (the office's), `service_id`, `tag` and `first_person` (loadgen.person),
    `pii_key`, `one_phone_per_identity`, `bookings_per_day`, `active_per_service`,
    `rebook_cooldown`, `batch_max`, `in_flight`, `concurrency`, `warmup`, `seconds`."""
    return child_main(drive)
