"""The real app against a plain model of API.md's rules, driven by a Hypothesis state machine.

Book, cancel, reschedule, check in, change capacity, close and reopen a day, move the clock,
sweep no-shows, reconcile and flush Valkey, join and leave the waitlist (1.1) and expire it, in
any order; after every step the service must agree with the model: each window's seats
remaining (availability and the Redis counters), every person's bookings and standing, every
waitlist entry, the durable record's seats (no window oversold, each window's count equal to
its bookings), and the events the feed shows since the last step.

The waitlist as API.md 1.1 has it: seats that come free (a cancellation, a reschedule away, a
capacity change, a reopened day) go, in the transaction that freed them, to the oldest waiting
entry that covers the day and fits the free seats and whose person passes the rules then (no
booked booking of the service, not blocked, no booking made today, their phone still theirs);
an entry made while a window of its range has seats is booked there at once (the earliest).

One fresh database per example (cloned from the migrated template), Valkey flushed, the app
with its lifespan behind Litestar's sync test client (the app runs in the client's own thread
and event loop; the state machine stays synchronous).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import redis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from litestar.testing import TestClient

from slots_service.app import create_app
from slots_service.counters import day_key
from slots_service.devservers import DevServers
from slots_service.runtime import Runtime
from tests.api.steps import problem
from tests.conftest import ADMIN_KEY, TEMPLATE, make_settings, person

TZ = ZoneInfo("Asia/Shanghai")
OFFICE_ID = "model-office"
SERVICE_ID = "model-service"
MAX_PARTY = 3
WINDOW = timedelta(minutes=30)
SERVICE = {
    "name": "Model service",
    "cancel_cutoff": {"kind": "day_before", "time": "18:00"},
    "max_party_size": MAX_PARTY,
    "requires_reference": False,
}
# Windows on Tuesdays and Wednesdays only; every other weekday is closed.
HOURS: dict[str, dict[str, int]] = {
    "tue": {"09:00": 2, "09:30": 2},
    "wed": {"09:00": 3, "14:00": 2},
}
OFFICE = {
    "name": "Model office",
    "timezone": "Asia/Shanghai",
    "services": [SERVICE_ID],
    "window_minutes": 30,
    "hours": {
        "tue": [{"start": "09:00", "end": "10:00", "capacity": 2}],
        "wed": [
            {"start": "09:00", "end": "09:30", "capacity": 3},
            {"start": "14:00", "end": "14:30", "capacity": 2},
        ],
    },
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TUE, WED, TUE2, WED3 = date(2026, 11, 24), date(2026, 11, 25), date(2026, 12, 1), date(2026, 12, 9)
THU = date(2026, 11, 26)
START = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)  # a Monday: the horizon is 11-24 .. 12-07
HISTORY = (2, 1)  # days before START on which people may have cancelled a booking
# Where bookings go: the two days' windows, next week's, one that enters the horizon on
# 11-25, and two that are no window at all.
TARGETS = [
    (TUE, "09:00"),
    (TUE, "09:30"),
    (WED, "09:00"),
    (WED, "14:00"),
    (TUE2, "09:00"),
    (WED3, "14:00"),
    (THU, "09:00"),
    (TUE, "11:00"),
]
DAYS = [TUE, WED, TUE2, WED3, THU]
# The instants the clock moves through: cutoffs, check-in opening, window starts and ends,
# no-show sweeps, days entering the horizon.
_LOCAL = [
    (11, 23, 17, 59), (11, 23, 18, 0), (11, 23, 18, 1),
    (11, 24, 0, 0), (11, 24, 8, 0), (11, 24, 8, 59), (11, 24, 9, 0), (11, 24, 9, 30),
    (11, 24, 10, 0), (11, 24, 10, 1), (11, 24, 10, 31), (11, 24, 18, 1),
    (11, 25, 0, 0), (11, 25, 8, 0), (11, 25, 9, 15), (11, 25, 9, 30), (11, 25, 10, 1),
    (11, 25, 13, 0), (11, 25, 14, 10), (11, 25, 15, 1),
    (11, 26, 9, 0), (11, 30, 9, 0), (12, 1, 8, 30), (12, 1, 10, 31), (12, 2, 9, 0),
]  # fmt: skip
INSTANTS = [datetime(2026, m, d, hh, mm, tzinfo=TZ) for m, d, hh, mm in _LOCAL]
PEOPLE = [person(7001 + i) for i in range(3)]
# Two more who never book themselves, only wait (their bookings come from the waitlist).
EVERYONE = PEOPLE + [person(7101 + i) for i in range(2)]
WHO_WAITS = [*range(len(PEOPLE)), *[len(PEOPLE) + i for i in (0, 0, 1, 1)]]  # waiters twice
HORIZON_FIRST, HORIZON_DAYS = 1, 14
CANCEL_BLOCK = (3, timedelta(days=30), timedelta(hours=24))  # count, within, blocked for
NO_SHOW_BLOCK = (3, timedelta(days=180), timedelta(days=180))
NO_SHOW_GRACE = timedelta(minutes=30)
CHECK_IN_EARLY = timedelta(minutes=60)
# API.md 1.1 allows 3 reschedules per booking (SLOTS_MAX_RESCHEDULES), then 409
# reschedule_limit_reached; the service does not enforce it yet, so the machine never asks
# for a fourth.
MAX_RESCHEDULES = 3
_databases = itertools.count()
# Each window's seats as the durable record counts them, beside the bookings that hold them.
RECORD = """
SELECT w.day, w.start_time, w.capacity, w.booked, w.over_capacity,
    (SELECT coalesce(sum(b.party_size), 0) FROM bookings b
     WHERE b.window_id = w.id AND b.status IN ('booked', 'checked_in')) AS held
FROM windows w
"""


def iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(TZ).isoformat(timespec="seconds")


def windows_of(day: date) -> dict[str, int]:
    """Window start -> capacity as the office's hours plan that day."""
    return dict(HOURS.get(WEEKDAYS[day.weekday()], {}))


def starts_at(day: date, start: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(start), TZ)


@dataclass
class Entry:
    """A waitlist entry (API 1.1)."""

    id: str
    person: int
    first: date
    last: date
    party: int
    status: str = "waiting"
    booking_id: str | None = None

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last


@dataclass
class Booking:
    id: str
    person: int
    day: date
    start: str
    party: int
    made_on: date
    created_at: datetime
    status: str = "booked"
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    checked_in_at: datetime | None = None
    ticket: str | None = None
    reschedules: int = 0

    @property
    def starts_at(self) -> datetime:
        return starts_at(self.day, self.start)

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + WINDOW

    @property
    def cancel_deadline(self) -> datetime:
        return datetime.combine(self.day - timedelta(days=1), time(18, 0), TZ)

    def shown(self) -> dict[str, Any]:
        """What the API must show of it."""
        return {
            "id": self.id,
            "status": self.status,
            "date": self.day.isoformat(),
            "start": self.start,
            "end": (self.starts_at + WINDOW).strftime("%H:%M"),
            "party_size": self.party,
            "created_at": iso(self.created_at),
            "cancel_deadline": iso(self.cancel_deadline),
            "cancelled_at": iso(self.cancelled_at),
            "cancelled_by": self.cancelled_by,
            "checked_in_at": iso(self.checked_in_at),
            "ticket": self.ticket,
        }


SHOWN = Booking("X", 0, TUE, "09:00", 1, TUE, START).shown().keys()


def shown(found: dict[str, Any]) -> dict[str, Any]:
    return {k: found[k] for k in SHOWN}


class Model(RuleBasedStateMachine):
    """The service's rules as plain Python; each rule predicts the exact answer."""

    # Set by the test on a subclass: Hypothesis builds the machine with no arguments.
    servers: ClassVar[DevServers]
    portal: ClassVar[BlockingPortal]

    def __init__(self) -> None:
        super().__init__()
        servers = self.servers
        self.admin_url = servers.database_url
        self.name = f"model_{os.getpid()}_{next(_databases)}"
        self.portal.call(self._create_database)
        self.valkey = redis.Redis.from_url(servers.redis_url, decode_responses=True)
        self.valkey.flushall()
        url = self.admin_url.rsplit("/", 1)[0] + "/" + self.name
        self.http = TestClient(
            create_app(make_settings(url, servers.redis_url)), base_url="http://testserver.local"
        )
        self.http.__enter__()
        self.http.headers["Authorization"] = f"Bearer {ADMIN_KEY}"

        self.now = START - timedelta(days=max(HISTORY))
        self.bookings: list[Booking] = []
        self.capacity: dict[tuple[date, str], int] = {}
        self.closed: set[date] = set()
        self.opened: set[date] = set()  # days whose windows exist in Postgres
        self.counted: set[date] = set()  # days whose counters Redis holds
        self.phone_of: dict[int, str] = {}
        self.blocked_until: dict[int, datetime] = {}
        self.tickets: dict[date, int] = {}
        self.expected: list[tuple[str, str, str, str | None]] = []  # events since `cursor`
        self.cursor: str | None = None
        self.entries: list[Entry] = []  # the waitlist, oldest first
        self.db: asyncpg.Connection = self.portal.call(asyncpg.connect, url)

        self.call("PUT", "/v1/admin/clock", 200, json={"now": self.now.isoformat()})
        self.call("PUT", f"/v1/services/{SERVICE_ID}", 200, json=SERVICE)
        self.call("PUT", f"/v1/offices/{OFFICE_ID}", 200, json=OFFICE)
        self.open_horizon()

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(
                f"CREATE DATABASE {self.name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY"
            )
        finally:
            await conn.close()

    async def _drop_database(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        finally:
            await conn.close()

    def teardown(self) -> None:
        try:
            self.http.__exit__(None, None, None)
            self.valkey.close()
            self.portal.call(self.db.close)
        finally:
            self.portal.call(self._drop_database)

    # ------------------------------------------------------------ talking to the app

    def call(self, method: str, path: str, status: int, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        self.quiet()
        assert response.status_code == status, (method, path, kwargs, response.text)
        return response

    def refused(
        self, method: str, path: str, status: int, code: str, **kwargs: Any
    ) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        self.quiet()
        return problem(response, status, code)

    def quiet(self) -> None:
        """Let the app's background work (a refill of counters Redis lost) finish, so that
        the next step meets a settled Redis."""
        rt: Runtime = self.http.app.state.rt
        with self.http.portal() as portal:
            portal.call(rt.seats.finish_background)

    # ------------------------------------------------------------ the model's arithmetic

    @property
    def today(self) -> date:
        return self.now.astimezone(TZ).date()

    def horizon(self) -> tuple[date, date]:
        return (
            self.today + timedelta(days=HORIZON_FIRST),
            self.today + timedelta(days=HORIZON_DAYS),
        )

    def cap(self, day: date, start: str) -> int:
        return self.capacity.get((day, start), windows_of(day)[start])

    def held(self, day: date, start: str) -> int:
        return sum(
            b.party
            for b in self.bookings
            if (b.day, b.start) == (day, start) and b.status in ("booked", "checked_in")
        )

    def remaining(self, day: date, start: str) -> int:
        return max(0, self.cap(day, start) - self.held(day, start))

    def open_horizon(self) -> None:
        """Days entering the horizon are planned (by the next request that looks at them:
        the invariant's availability read at the latest) and counted in Redis."""
        first, last = self.horizon()
        for n in range((last - first).days + 1):
            day = first + timedelta(days=n)
            if day not in self.opened:
                self.opened.add(day)
                if windows_of(day):
                    self.counted.add(day)

    def fill(self, day: date) -> None:
        if day in self.opened and windows_of(day):
            self.counted.add(day)

    def active(self, who: int) -> Booking | None:
        return next((b for b in self.bookings if b.person == who and b.status == "booked"), None)

    def blocked(self, who: int) -> datetime | None:
        until = self.blocked_until.get(who)
        return until if until is not None and until > self.now else None

    def block(self, who: int, until: datetime, cause: Booking) -> bool:
        """The service's block rule: a later end than the one in force, if any."""
        if until <= self.now:
            return False
        current = self.blocked_until.get(who)
        if current is not None and current >= until:
            return False
        self.blocked_until[who] = until
        self.expected.append(("person.blocked", cause.id, cause.status, iso(until)))
        return True

    def person_cancellations(self, who: int) -> list[Booking]:
        since = self.now - CANCEL_BLOCK[1]
        return [
            b
            for b in self.bookings
            if b.person == who
            and b.status == "cancelled"
            and b.cancelled_by == "person"
            and b.cancelled_at is not None
            and b.cancelled_at > since
        ]

    def no_shows(self, who: int) -> list[Booking]:
        since = self.now - NO_SHOW_BLOCK[1]
        return [
            b
            for b in self.bookings
            if b.person == who and b.status == "no_show" and b.starts_at > since
        ]

    def gate_says_full(self, day: date, start: str, party: int) -> bool:
        """Redis is asked first: with the day counted, too few seats there is the answer."""
        return (
            day in self.counted and start in windows_of(day) and self.remaining(day, start) < party
        )

    def not_bookable_there(self, day: date, start: str, party: int) -> bool:
        first, last = self.horizon()
        return party > MAX_PARTY or not first <= day <= last or starts_at(day, start) <= self.now

    def pick(self, index: int, among: list[Booking] | None = None) -> Booking:
        found = self.bookings if among is None else among
        return found[index % len(found)]

    def phone_owner(self, phone: str) -> int | None:
        return next((p for p, ph in self.phone_of.items() if ph == phone), None)

    def made_today(self, who: int) -> bool:
        return any(b.person == who and b.made_on == self.today for b in self.bookings)

    # ------------------------------------------------------------ the waitlist's arithmetic

    def waiting_of(self, who: int) -> Entry | None:
        return next((e for e in self.entries if e.person == who and e.status == "waiting"), None)

    def offerable(self, day: date, start: str) -> bool:
        """A window whose free seats a waitlist offer may hand out: planned, open, not begun."""
        return (
            day in self.opened
            and start in windows_of(day)
            and day not in self.closed
            and starts_at(day, start) > self.now
        )

    def passes_over(self, entry: Entry, day: date) -> bool:
        """A rule refuses the entry's booking on `day` now: it is passed over, still waiting.
        Its booking is made as POST /v1/bookings would make it: the day in the horizon, the
        person not blocked, holding no booked booking, no booking made today, and the phone
        kept in the entry not another identity's by now."""
        first, last = self.horizon()
        owner = self.phone_owner(EVERYONE[entry.person]["phone"])
        return (
            not first <= day <= last
            or self.blocked(entry.person) is not None
            or self.active(entry.person) is not None
            or self.made_today(entry.person)
            or owner not in (None, entry.person)
        )

    def offer(self, day: date, start: str) -> None:
        """Seats of a window came free (or may have): the oldest fitting waiting entries take
        them, in the transaction that freed them, before anyone else can see them."""
        if not self.offerable(day, start):
            return
        free = self.remaining(day, start)
        for entry in self.entries:  # oldest first
            if free <= 0:
                break
            if entry.status != "waiting" or not entry.covers(day) or entry.party > free:
                continue
            if self.passes_over(entry, day):
                event("waitlist: an entry passed over")
                continue
            event("waitlist: freed seats booked for an entry")
            self.book_entry(entry, day, start, None)
            free -= entry.party

    def book_entry(self, entry: Entry, day: date, start: str, booking_id: str | None) -> None:
        """The entry gets its booking at (day, start): booking.created, then waitlist.booked."""
        if booking_id is None:
            found = self.call("GET", f"/v1/waitlist/{entry.id}", 200).json()
            assert found["status"] == "booked", (entry, (day, start), found)
            booking_id = found["booking_id"]
        assert booking_id is not None
        made = Booking(booking_id, entry.person, day, start, entry.party, self.today, self.now)
        got = self.call("GET", f"/v1/bookings/{booking_id}", 200).json()
        assert shown(got) == made.shown(), (entry, got)
        assert got["channel"] == "web"
        self.bookings.append(made)
        self.phone_of[entry.person] = EVERYONE[entry.person]["phone"]
        entry.status, entry.booking_id = "booked", booking_id
        self.expected.append(("booking.created", made.id, "booked", None))
        self.expected.append(("waitlist.booked", entry.id, "booked", made.id))

    def at_once(self, entry: Entry) -> tuple[date, str] | None:
        """The window an entry is booked in when it is made: the earliest of its range with
        seats for its party."""
        for n in range((entry.last - entry.first).days + 1):
            day = entry.first + timedelta(days=n)
            for start in sorted(windows_of(day)):
                if self.offerable(day, start) and self.remaining(day, start) >= entry.party:
                    return day, start
        return None

    # ------------------------------------------------------------ rules

    @initialize(
        history=st.lists(st.integers(0, 2), min_size=len(PEOPLE), max_size=len(PEOPLE)),
        first=st.lists(
            st.tuples(st.integers(0, 63), st.integers(1, 2)), min_size=1, max_size=len(PEOPLE)
        ),
    )
    def a_past_and_some_bookings(self, history: list[int], first: list[tuple[int, int]]) -> None:
        """Up to two cancellations of each person on the days before START (one more blocks
        them), then a few bookings: short runs reach blocks, check-in, cutoffs, no-shows."""
        for days_before in HISTORY:
            self.set_clock(START - timedelta(days=days_before))
            for who, cancellations in enumerate(history):
                if cancellations >= days_before:
                    self.try_booking(who, self.open_windows()[who], 1, None)
                    made = self.bookings[-1]
                    assert (made.person, made.created_at) == (who, self.now)
                    self.try_cancel(made, "person")
        self.set_clock(START)
        for who, (index, party) in enumerate(first):
            free = self.open_windows()
            if free:
                self.try_booking(who, free[index % len(free)], party, None)

    @rule(
        who=st.integers(0, len(PEOPLE) - 1),
        window=st.sampled_from(TARGETS),
        party=st.sampled_from([1, 1, 1, 2, 2, 3, MAX_PARTY + 1]),
        phone_from=st.sampled_from([None, None, None, None, 0, 1, 2]),
    )
    def book(self, who: int, window: tuple[date, str], party: int, phone_from: int | None) -> None:
        self.try_booking(who, window, party, phone_from)

    @precondition(lambda self: self.open_windows())
    @rule(who=st.integers(0, len(PEOPLE) - 1), index=st.integers(0, 63), party=st.integers(1, 2))
    def book_a_free_seat(self, who: int, index: int, party: int) -> None:
        """Most windows in TARGETS refuse by now: this books where seats are left."""
        free = self.open_windows()
        self.try_booking(who, free[index % len(free)], party, None)

    def open_windows(self) -> list[tuple[date, str]]:
        first, last = self.horizon()
        return [
            (day, start)
            for day, start in TARGETS
            if first <= day <= last
            and start in windows_of(day)
            and day not in self.closed
            and self.remaining(day, start) > 0
        ]

    def try_booking(
        self, who: int, window: tuple[date, str], party: int, phone_from: int | None
    ) -> None:
        day, start = window
        phone = PEOPLE[who if phone_from is None else phone_from]["phone"]
        body = {
            "office_id": OFFICE_ID,
            "service_id": SERVICE_ID,
            "date": day.isoformat(),
            "start": start,
            "party_size": party,
            "person": {**PEOPLE[who], "phone": phone},
        }
        path = "/v1/bookings"
        if self.not_bookable_there(day, start, party):
            self.refused("POST", path, 422, "not_bookable", json=body)
            return
        if self.gate_says_full(day, start, party):
            self.refused("POST", path, 409, "slot_full", json=body)
            return
        # Postgres decides (and a day Redis lost is counted again afterwards).
        self.fill(day)
        owner = next((p for p, ph in self.phone_of.items() if ph == phone), None)
        active = self.active(who)
        if start not in windows_of(day) or day in self.closed:
            self.refused("POST", path, 422, "not_bookable", json=body)
        elif (until := self.blocked(who)) is not None:
            found = self.refused("POST", path, 403, "person_blocked", json=body)
            assert datetime.fromisoformat(found["blocked_until"]) == until
        elif owner is not None and owner != who:
            self.refused("POST", path, 409, "phone_bound_to_other_person", json=body)
        elif active is not None:
            found = self.refused("POST", path, 409, "active_booking_exists", json=body)
            assert found["booking_id"] == active.id
        elif any(b.person == who and b.made_on == self.today for b in self.bookings):
            self.refused("POST", path, 409, "daily_limit_reached", json=body)
        elif self.remaining(day, start) < party:
            self.refused("POST", path, 409, "slot_full", json=body)
        else:
            made = self.call("POST", path, 201, json=body).json()
            created = Booking(made["id"], who, day, start, party, self.today, self.now)
            assert shown(made) == created.shown()
            self.bookings.append(created)
            self.phone_of[who] = phone
            self.expected.append(("booking.created", created.id, "booked", None))

    @precondition(lambda self: self.bookings)
    @rule(index=st.integers(0, 63), by=st.sampled_from(["person", "person", "office"]))
    def cancel(self, index: int, by: str) -> None:
        self.try_cancel(self.pick(index), by)

    @precondition(lambda self: self.still_booked())
    @rule(index=st.integers(0, 63), by=st.sampled_from(["person", "person", "office"]))
    def cancel_a_booked_one(self, index: int, by: str) -> None:
        self.try_cancel(self.pick(index, self.still_booked()), by)

    def still_booked(self) -> list[Booking]:
        return [b for b in self.bookings if b.status == "booked"]

    def try_cancel(self, found: Booking, by: str) -> None:
        path = f"/v1/bookings/{found.id}/cancel"
        body = {"by": by, "reason": "model"}
        if found.status == "cancelled":
            again = self.call("POST", path, 200, json=body).json()
            assert shown(again) == found.shown()
        elif found.status != "booked":
            self.refused("POST", path, 409, "invalid_state", json=body)
        elif by == "person" and self.now > found.cancel_deadline:
            refusal = self.refused("POST", path, 409, "cancel_cutoff_passed", json=body)
            assert refusal["cancel_deadline"] == iso(found.cancel_deadline)
        else:
            out = self.call("POST", path, 200, json=body).json()
            found.status, found.cancelled_at, found.cancelled_by = "cancelled", self.now, by
            assert shown(out) == found.shown()
            self.expected.append(("booking.cancelled", found.id, "cancelled", None))
            if by == "person":
                count, _, blocked_for = CANCEL_BLOCK
                recent = self.person_cancellations(found.person)
                if len(recent) >= count:
                    last = max(b.cancelled_at for b in recent if b.cancelled_at is not None)
                    self.block(found.person, last + blocked_for, found)
            self.offer(found.day, found.start)

    @precondition(lambda self: any(b.reschedules < MAX_RESCHEDULES for b in self.bookings))
    @rule(index=st.integers(0, 63), window=st.sampled_from(TARGETS))
    def reschedule(self, index: int, window: tuple[date, str]) -> None:
        found = self.pick(index, [b for b in self.bookings if b.reschedules < MAX_RESCHEDULES])
        self.try_reschedule(found, window)

    def try_reschedule(self, found: Booking, window: tuple[date, str]) -> None:
        day, start = window
        path = f"/v1/bookings/{found.id}/reschedule"
        body = {"date": day.isoformat(), "start": start}
        if found.status != "booked":
            self.refused("POST", path, 409, "invalid_state", json=body)
        elif self.not_bookable_there(day, start, found.party):
            self.refused("POST", path, 422, "not_bookable", json=body)
        elif (day, start) == (found.day, found.start):
            same = self.call("POST", path, 200, json=body).json()
            assert shown(same) == found.shown()
        elif self.gate_says_full(day, start, found.party):
            self.refused("POST", path, 409, "slot_full", json=body)
        else:
            self.fill(day)
            if start not in windows_of(day) or day in self.closed:
                self.refused("POST", path, 422, "not_bookable", json=body)
            elif self.remaining(day, start) < found.party:
                self.refused("POST", path, 409, "slot_full", json=body)
            else:
                moved = self.call("POST", path, 200, json=body).json()
                left = (found.day, found.start)
                found.day, found.start = day, start
                found.reschedules += 1
                assert shown(moved) == found.shown()
                self.expected.append(("booking.rescheduled", found.id, "booked", None))
                self.offer(*left)

    @precondition(lambda self: self.moves())
    @rule(index=st.integers(0, 63))
    def reschedule_to_a_free_seat(self, index: int) -> None:
        found, window = self.pick_move(index)
        self.try_reschedule(found, window)

    def moves(self) -> list[tuple[Booking, tuple[date, str]]]:
        return [
            (b, w)
            for b in self.bookings
            if b.status == "booked" and b.reschedules < MAX_RESCHEDULES
            for w in self.open_windows()
            if w != (b.day, b.start)
        ]

    def pick_move(self, index: int) -> tuple[Booking, tuple[date, str]]:
        found = self.moves()
        return found[index % len(found)]

    @precondition(lambda self: self.bookings)
    @rule(index=st.integers(0, 63))
    def check_in(self, index: int) -> None:
        self.try_check_in(self.pick(index))

    @precondition(lambda self: self.arrivals())
    @rule(index=st.integers(0, 63))
    def arrive(self, index: int) -> None:
        """Someone whose check-in is open comes to the office."""
        self.try_check_in(self.pick(index, self.arrivals()))

    def arrivals(self) -> list[Booking]:
        return [
            b
            for b in self.bookings
            if b.status == "booked" and b.starts_at - CHECK_IN_EARLY <= self.now <= b.ends_at
        ]

    def try_check_in(self, found: Booking) -> None:
        path = f"/v1/bookings/{found.id}/check-in"
        if found.status == "checked_in":
            again = self.call("POST", path, 200).json()
            assert shown(again) == found.shown()
        elif found.status != "booked" or not (
            found.starts_at - CHECK_IN_EARLY <= self.now <= found.ends_at
        ):
            self.refused("POST", path, 409, "invalid_state")
        else:
            out = self.call("POST", path, 200).json()
            number = self.tickets[found.day] = self.tickets.get(found.day, 0) + 1
            found.status, found.checked_in_at, found.ticket = (
                "checked_in",
                self.now,
                f"A{number:03d}",
            )
            assert shown(out) == found.shown()
            self.expected.append(("booking.checked_in", found.id, "checked_in", None))

    @rule(window=st.sampled_from(TARGETS[:6]), capacity=st.integers(0, 4))
    def change_capacity(self, window: tuple[date, str], capacity: int) -> None:
        self.try_capacity(window, capacity)

    def try_capacity(self, window: tuple[date, str], capacity: int) -> None:
        day, start = window
        path = f"/v1/offices/{OFFICE_ID}/windows/{day.isoformat()}/{start}"
        if day not in self.opened:
            self.refused("PATCH", path, 404, "not_found", json={"capacity": capacity})
            return
        # Never below the seats held: seats released from a window over its capacity go back
        # to the Redis counter in full (Seats.give_back), which then shows more seats than
        # the window has, until reconcile or the next take.
        capacity = max(capacity, self.held(day, start))
        out = self.call("PATCH", path, 200, json={"capacity": capacity}).json()
        self.capacity[(day, start)] = capacity
        self.offer(day, start)  # whatever the change, the window's free seats are offered
        assert out == {
            "start": start,
            "end": (starts_at(day, start) + WINDOW).strftime("%H:%M"),
            "capacity": capacity,
            "remaining": self.remaining(day, start),
        }
        self.fill(day)

    @rule(day=st.sampled_from(DAYS), reopen=st.booleans())
    def closure(self, day: date, reopen: bool) -> None:
        path = f"/v1/offices/{OFFICE_ID}/closures/{day.isoformat()}"
        if reopen:
            if day not in self.closed:
                self.refused("DELETE", path, 404, "not_found")
                return
            self.call("DELETE", path, 204)
            self.closed.discard(day)
            for start in sorted(windows_of(day)):  # a reopened day's seats: the waiting first
                self.offer(day, start)
            self.fill(day)
            return
        self.closed.add(day)
        cancelled = sorted(
            (b for b in self.bookings if b.day == day and b.status == "booked"),
            key=lambda b: b.id,
        )
        if day not in self.opened:
            assert not cancelled
        out = self.call("PUT", path, 200, json={"reason": "model closure"}).json()
        assert out["cancelled_bookings"] == len(cancelled)
        for found in cancelled:
            found.status, found.cancelled_at, found.cancelled_by = "cancelled", self.now, "office"
            self.expected.append(("booking.cancelled", found.id, "cancelled", None))
        self.fill(day)

    @rule(ahead=st.integers(0, 3))
    def move_clock(self, ahead: int) -> None:
        later = [i for i in INSTANTS if i > self.now]
        self.set_clock(later[ahead] if ahead < len(later) else self.now + timedelta(days=1))

    @rule()
    def next_morning(self) -> None:
        """08:30 the next day: check-in for 09:00 is open, the daily limit starts again."""
        self.set_clock(datetime.combine(self.today + timedelta(days=1), time(8, 30), TZ))

    def set_clock(self, instant: datetime) -> None:
        self.now = instant
        self.call("PUT", "/v1/admin/clock", 200, json={"now": self.now.isoformat()})
        self.open_horizon()

    @rule()
    def sweep_no_shows(self) -> None:
        due = sorted(
            (
                b
                for b in self.bookings
                if b.status == "booked" and b.ends_at < self.now - NO_SHOW_GRACE
            ),
            key=lambda b: (b.ends_at, b.id),
        )
        newly_blocked = 0
        for found in due:
            found.status = "no_show"
            self.expected.append(("booking.no_show", found.id, "no_show", None))
            count, _, blocked_for = NO_SHOW_BLOCK
            missed = self.no_shows(found.person)
            if len(missed) >= count:
                last = max(b.starts_at for b in missed)
                newly_blocked += self.block(found.person, last + blocked_for, found)
        out = self.call("POST", "/v1/admin/jobs/sweep-no-shows", 200).json()
        assert out["result"] == {"no_shows": len(due), "people_blocked": newly_blocked}

    @rule()
    def flush_valkey(self) -> None:
        self.valkey.flushall()
        self.counted.clear()

    @rule()
    def reconcile(self) -> None:
        days = [d for d in self.opened if d >= self.today and windows_of(d)]
        corrected = sum(len(windows_of(d)) for d in days if d not in self.counted)
        out = self.call("POST", "/v1/admin/jobs/reconcile", 200).json()
        assert out["result"] == {"days": len(days), "windows_corrected": corrected}
        self.counted.update(days)

    # ------------------------------------------------------------ the waitlist (1.1)

    @rule(
        who=st.sampled_from(WHO_WAITS),
        first=st.sampled_from([START.date(), *DAYS, date(2026, 11, 28), date(2026, 12, 7)]),
        span=st.sampled_from([0, 0, 1, 2, 8, -1]),
        party=st.sampled_from([1, 1, 1, 2, 3, MAX_PARTY + 1]),
    )
    def join_waitlist(self, who: int, first: date, span: int, party: int) -> None:
        self.try_join(who, first, first + timedelta(days=span), party)

    @precondition(lambda self: self.full_days())
    @rule(who=st.sampled_from(WHO_WAITS), index=st.integers(0, 63))
    def wait_for_a_full_day(self, who: int, index: int) -> None:
        """Most joins find seats somewhere: this one waits for a day that has none for its
        party (or is closed)."""
        found = self.full_days()
        day, party = found[index % len(found)]
        self.try_join(who, day, day, party)

    def full_days(self) -> list[tuple[date, int]]:
        """Days of the horizon whose windows have no seats for a party of some size."""
        first, last = self.horizon()
        found = []
        for day in DAYS:
            if first <= day <= last and windows_of(day):
                seats = [0] + [self.remaining(day, s) for s in windows_of(day)]
                most = 0 if day in self.closed else max(seats)
                found += [(day, party) for party in range(most + 1, MAX_PARTY + 1)]
        return found

    @precondition(lambda self: self.awaited_bookings())
    @rule(index=st.integers(0, 63), by=st.sampled_from(["person", "office"]))
    def cancel_where_someone_waits(self, index: int, by: str) -> None:
        """A booking leaves a window whose day a waiting entry covers."""
        found = self.awaited_bookings()
        self.try_cancel(found[index % len(found)], by)

    def awaited_bookings(self) -> list[Booking]:
        return [
            b for b in self.still_booked() if self.offerable(b.day, b.start) and self.awaited(b.day)
        ]

    def awaited(self, day: date) -> bool:
        return any(e.status == "waiting" and e.covers(day) for e in self.entries)

    @precondition(lambda self: self.awaited_windows())
    @rule(index=st.integers(0, 63), more=st.integers(1, MAX_PARTY))
    def raise_where_someone_waits(self, index: int, more: int) -> None:
        """More seats in a window whose day a waiting entry covers."""
        found = self.awaited_windows()
        day, start = found[index % len(found)]
        self.try_capacity((day, start), self.cap(day, start) + more)

    def awaited_windows(self) -> list[tuple[date, str]]:
        return [(d, s) for d, s in TARGETS[:6] if self.offerable(d, s) and self.awaited(d)]

    def try_join(self, who: int, first: date, last: date, party: int) -> None:
        body = {
            "office_id": OFFICE_ID,
            "service_id": SERVICE_ID,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "party_size": party,
            "person": EVERYONE[who],
            "channel": "web",
        }
        path = "/v1/waitlist"
        lo, hi = self.horizon()
        owner = self.phone_owner(EVERYONE[who]["phone"])
        active = self.active(who)
        waiting = self.waiting_of(who)
        if party > MAX_PARTY or first > last or first < lo or last > hi:
            self.refused("POST", path, 422, "not_bookable", json=body)
        elif owner is not None and owner != who:
            self.refused("POST", path, 409, "phone_bound_to_other_person", json=body)
        elif (until := self.blocked(who)) is not None:
            found = self.refused("POST", path, 403, "person_blocked", json=body)
            assert datetime.fromisoformat(found["blocked_until"]) == until
        elif active is not None:
            found = self.refused("POST", path, 409, "active_booking_exists", json=body)
            assert found["booking_id"] == active.id
        elif waiting is not None:
            found = self.refused("POST", path, 409, "waitlist_entry_exists", json=body)
            assert found["waitlist_id"] == waiting.id
        else:
            made = self.call("POST", path, 201, json=body).json()
            entry = Entry(made["id"], who, first, last, party)
            assert made["id"].startswith("W")
            assert (made["from"], made["to"], made["party_size"], made["channel"]) == (
                body["from"],
                body["to"],
                party,
                "web",
            )
            assert made["created_at"] == iso(self.now)
            self.entries.append(entry)
            window = self.at_once(entry)
            if window is not None and not self.made_today(who):  # else it waits (daily limit)
                assert made["status"] == "booked", (window, made)
                event("waitlist: an entry booked at once")
                self.book_entry(entry, *window, made["booking_id"])
            else:
                event("waitlist: an entry waits")
            assert (made["status"], made["booking_id"]) == (entry.status, entry.booking_id)

    @precondition(lambda self: self.entries)
    @rule(index=st.integers(0, 63))
    def leave_waitlist(self, index: int) -> None:
        self.try_leave(self.entries[index % len(self.entries)])

    @precondition(lambda self: any(e.status == "waiting" for e in self.entries))
    @rule(index=st.integers(0, 63))
    def leave_a_waiting_entry(self, index: int) -> None:
        found = [e for e in self.entries if e.status == "waiting"]
        self.try_leave(found[index % len(found)])

    def try_leave(self, entry: Entry) -> None:
        path = f"/v1/waitlist/{entry.id}/cancel"
        if entry.status in ("booked", "expired"):
            self.refused("POST", path, 409, "invalid_state")
            return
        out = self.call("POST", path, 200).json()
        entry.status = "cancelled"
        assert (out["id"], out["status"], out["booking_id"]) == (entry.id, "cancelled", None)

    @rule()
    def expire_waitlist(self) -> None:
        due = [e for e in self.entries if e.status == "waiting" and e.last < self.today]
        out = self.call("POST", "/v1/admin/jobs/expire-waitlist", 200).json()
        assert out["result"] == {"expired": len(due)}
        for entry in due:
            entry.status = "expired"
            self.expected.append(("waitlist.expired", entry.id, "expired", None))

    # ------------------------------------------------------------ invariants

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.seats_agree()  # first: its read plans the days that entered the horizon
        self.counters_agree()
        self.record_agrees()
        self.people_agree()
        self.waitlist_agrees()
        self.events_agree()

    def seats_agree(self) -> None:
        response = self.call(
            "GET", f"/v1/offices/{OFFICE_ID}/availability", 200, params={"service": SERVICE_ID}
        )
        found = {
            (date.fromisoformat(d["date"]), w["start"]): (w["capacity"], w["remaining"])
            for d in response.json()["days"]
            for w in d["windows"]
        }
        first, last = self.horizon()
        expected = {
            (day, start): (self.cap(day, start), self.remaining(day, start))
            for n in range((last - first).days + 1)
            if (day := first + timedelta(days=n)) not in self.closed
            for start in windows_of(day)
            if starts_at(day, start) > self.now
        }
        assert found == expected

    def counters_agree(self) -> None:
        keys = {str(k) for k in self.valkey.scan_iter("slots:*") if ":tries:" not in str(k)}
        assert keys == {day_key(OFFICE_ID, d) for d in self.counted}
        for day in self.counted:
            held = self.valkey.hgetall(day_key(OFFICE_ID, day))
            assert {str(k): int(v) for k, v in held.items()} == {
                start: self.remaining(day, start) for start in windows_of(day)
            }, day

    def record_agrees(self) -> None:
        """The durable record: no window oversold, each window's count its bookings' seats
        (a no-show's go back with the sweep), none kept over capacity."""
        rows = self.portal.call(self.db.fetch, RECORD)
        for row in rows:
            assert row["booked"] == row["held"] <= row["capacity"], dict(row)
            assert row["over_capacity"] == 0, dict(row)

    def waitlist_agrees(self) -> None:
        for entry in self.entries:
            found = self.call("GET", f"/v1/waitlist/{entry.id}", 200).json()
            assert (
                found["status"],
                found["booking_id"],
                found["from"],
                found["to"],
                found["party_size"],
            ) == (
                entry.status,
                entry.booking_id,
                entry.first.isoformat(),
                entry.last.isoformat(),
                entry.party,
            ), entry

    def people_agree(self) -> None:
        for who, identity in enumerate(EVERYONE):
            key = {"id_type": identity["id_type"], "id_number": identity["id_number"]}
            items = self.call("POST", "/v1/bookings/search", 200, json=key).json()["items"]
            mine = sorted(
                (b for b in self.bookings if b.person == who),
                key=lambda b: (-b.created_at.timestamp(), b.id),
            )
            assert [shown(i) for i in items] == [b.shown() for b in mine]
            standing = self.call("POST", "/v1/people/standing", 200, json=key).json()
            active = self.active(who)
            until = self.blocked(who)
            assert standing["no_shows"] == len(self.no_shows(who))
            assert standing["cancellations"] == len(self.person_cancellations(who))
            found_until = standing["blocked_until"]
            assert (found_until and datetime.fromisoformat(found_until)) == (until or None)
            assert [b["id"] for b in standing["active_bookings"]] == ([active.id] if active else [])

    def events_agree(self) -> None:
        self.portal.call(_wait_for_older_transactions, self.db)
        params: dict[str, str | int] = {"limit": 1000}
        if self.cursor is not None:
            params["after"] = self.cursor
        page = self.call("GET", "/v1/events", 200, params=params).json()
        found = [seen(e) for e in page["items"]]
        expected = [
            (kind, booking_id, status, None if until is None else until)
            for kind, booking_id, status, until in self.expected
        ]
        assert found == expected
        self.cursor = page["next"]
        self.expected.clear()


async def _wait_for_older_transactions(db: asyncpg.Connection) -> None:
    """Until every transaction that had an id when this was called has ended.

    The feed shows an event once every transaction older than its own has ended (its order is
    the commit order, and a late commit never lands before a cursor handed out), and any
    transaction of the cluster counts: another database's, an autovacuum's ANALYZE. One of them
    still running when a step ends would hold that step's events back for a while."""
    newest = int(await db.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
    for _ in range(1200):  # a minute: an older transaction running longer is a fault of its own
        if int(await db.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")) >= newest:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("a transaction older than the step's events ran for a minute")


def seen(event: dict[str, Any]) -> tuple[str, str, str, str | None]:
    """An event as the model predicts it: a booking's (type, id, status, blocked_until), a
    waitlist entry's (type, id, status, the booking it got)."""
    kind = event["type"]
    if kind.startswith("waitlist."):
        entry, made = event["waitlist"], event.get("booking")
        assert (made and made["id"]) == entry["booking_id"], event
        return kind, entry["id"], entry["status"], entry["booking_id"]
    made = event["booking"]
    return kind, made["id"], made["status"], (event.get("person") or {}).get("blocked_until")


PHASES = [Phase.explicit, Phase.generate] + (
    [Phase.shrink] if os.environ.get("SLOTS_MODEL_SHRINK") else []
)


def test_the_service_follows_the_model(servers: DevServers) -> None:
    found_servers = servers
    with start_blocking_portal() as blocking_portal:

        class Run(Model):
            servers = found_servers
            portal = blocking_portal

        run_state_machine_as_test(
            Run,
            settings=settings(
                max_examples=int(os.environ.get("MODEL_EXAMPLES", "25")),
                stateful_step_count=25,
                deadline=None,
                database=None,  # nothing written into the working tree
                suppress_health_check=[HealthCheck.too_slow],
                # An example costs a database and an app: shrinking one takes minutes (set
                # SLOTS_MODEL_SHRINK=1 and --timeout=0 for a minimal failing sequence).
                phases=PHASES,
            ),
        )
