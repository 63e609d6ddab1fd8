"""The `lottery` scenario of `slots-service bench` (issue 11): is a release by lottery fair when
bots hammer it, and what does the same crowd get from first come, first served?

The crowd (CrowdShape): 2 000 distinct identities, 10 % of them bots. A bot sends 50 requests
with its identity as fast as it can, a human one. Every request of the crowd is queued in one
random order and sent over CONNECTIONS keep-alive connections that all fire at once, one
request in flight each: everyone clicks at the same instant, so a bot's requests are in flight
beside one another (its first one among them, while Postgres still arbitrates it) and beside
the humans'.

1. Lottery: office `bench-lottery` (`release: {"mode": "lottery", "entries_open": "18:00",
   "max_choices": 3}`), its day D that enters the horizon at O (00:00, three days after today
   on the real clock: after the crowd scenario's day) with WINDOWS x SEATS_PER_WINDOW seats.
   The API runs on the test clock: set into the entry period (18:01 the evening before O), the
   crowd enters D (3 random choices per identity, the same in each of its requests), the clock
   moves to O, and `POST /v1/admin/jobs/draw-releases` draws (timed, with the
   `slots_draw_duration_seconds` the API observed). Then the public record
   (`GET /v1/offices/{office}/releases/{date}`, its `/draw` listing) and every entry
   (`GET /v1/entries/{id}`) are read, and the draw is verified from them alone (`verify`).
2. First come, first served: office `bench-first-come`, day D + 1, opening at O + 1 day. A new
   crowd of the same shape (new identities: the lottery's winners hold a booking of the
   service) waits on open connections, the clock crosses the opening instant, and every booking
   attempt (each of a bot's at a random window, a human's one at a random window) goes at once.

Reported: the bots' share of seats under each (the lottery's expected: their share of
identities), entries accepted (exactly one per identity), repeats answered 409 `entry_exists`
and whether each named the identity's one entry, the draw's time, "verified", and seats sold
beyond a window's capacity, counted in Postgres (0).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from ..config import Settings
from ..horizon import opens_at
from .catalog import SERVICE_ID, TIMEZONE, WEEKDAYS, call
from .crowd import clock_request
from .loadgen import latency_summary, parse_response, person

WINDOWS = 10
SEATS_PER_WINDOW = 20  # 200 seats a day
WINDOW_MINUTES = 30
MAX_CHOICES = 3
ENTRIES_OPEN = "18:00"
CONNECTIONS = 1000
TIME_LIMIT_S = 120.0  # each wave of requests
ENTRY_ANSWERS = ("201", "409 entry_exists")
BOOKING_ANSWERS = (
    "201",
    "409 slot_full",
    "409 active_booking_exists",
    "409 daily_limit_reached",
)


@dataclass(frozen=True)
class CrowdShape:
    identities: int = 2000
    bot_share: float = 0.1
    bot_repeats: int = 50

    @property
    def bots(self) -> int:
        """Identities 0 .. bots-1 are the bots."""
        return round(self.identities * self.bot_share)

    def is_bot(self, identity: int) -> bool:
        return identity < self.bots

    def order(self, rng: random.Random) -> list[int]:
        """The identity of each request of the crowd, in the order they are sent."""
        sent = [
            i
            for i in range(self.identities)
            for _ in range(self.bot_repeats if self.is_bot(i) else 1)
        ]
        rng.shuffle(sent)
        return sent

    def describe(self) -> str:
        humans = self.identities - self.bots
        return (
            f"{self.identities} identities: {self.bots} bots x {self.bot_repeats} requests, "
            f"{humans} humans x 1"
        )


@dataclass(frozen=True)
class Answer:
    """One request's answer: whose, its status label (`201`, `409 entry_exists`, ...), the id it
    names (a 201's `id`; a 409's `entry_id` or `booking_id`) and its latency."""

    identity: int
    label: str
    ref: str | None
    seconds: float
    body: bytes = b""


# ---------------------------------------------------------------- the pure parts


def share(winners: Iterable[int], shape: CrowdShape) -> float | None:
    """The bots' share of the seats won (one seat each here); None when nobody won."""
    won = list(winners)
    if not won:
        return None
    return sum(1 for i in won if shape.is_bot(i)) / len(won)


@dataclass
class EntryTally:
    """What the crowd's entries were answered."""

    accepted: int = 0  # 201s
    identities_entered: int = 0  # identities with at least one 201
    one_each: bool = False  # every identity exactly one 201
    repeats: int = 0  # 409 entry_exists
    same_entry: bool = False  # every repeat named its identity's one entry
    wrong_repeats: list[Answer] = field(default_factory=list)
    others: Counter[str] = field(default_factory=Counter)  # any other answer, by label
    entry_of: dict[int, str] = field(default_factory=dict)  # identity -> its entry


def tally_entries(answers: Iterable[Answer], shape: CrowdShape) -> EntryTally:
    out = EntryTally()
    made: dict[int, list[str]] = {}
    repeats: list[Answer] = []
    for a in answers:
        if a.label == "201" and a.ref:
            out.accepted += 1
            made.setdefault(a.identity, []).append(a.ref)
        elif a.label == "409 entry_exists":
            repeats.append(a)
        else:
            out.others[a.label] += 1
    out.entry_of = {i: refs[0] for i, refs in made.items() if len(refs) == 1}
    out.identities_entered = len(made)
    out.one_each = len(out.entry_of) == len(made) == shape.identities
    out.repeats = len(repeats)
    out.wrong_repeats = [
        a for a in repeats if a.ref is None or a.ref not in made.get(a.identity, [])
    ]
    out.same_entry = out.one_each and not out.wrong_repeats
    return out


@dataclass(frozen=True)
class Drawn:
    """An entry as the verifier needs it: its choices, party, and why it lost (if it did)."""

    choices: tuple[str, ...]
    party_size: int = 1
    lost_reason: str | None = None


def rank_order(seed: bytes, entry_ids: Iterable[str]) -> list[str]:
    """Entries by HMAC-SHA256(key = seed, message = entry id as ASCII), lowest hex first."""
    return sorted(
        entry_ids, key=lambda e: hmac.new(seed, e.encode("ascii"), hashlib.sha256).hexdigest()
    )


def verify(
    seed_hex: str,
    commitment: str,
    listing: Sequence[Mapping[str, Any]],
    entries: Mapping[str, Drawn],
    capacity: Mapping[str, int],
) -> list[str]:
    """What anyone can check from a draw's public record and its entries; the problems found
    (none: verified). SHA-256(seed) is the commitment; the listing holds every entry once, by
    rank 1, 2, ... in HMAC order; in that order each entry won the first of its choices that
    still had seats for its party, unless a rule refused its person (its `lost_reason`)."""
    problems: list[str] = []
    seed = bytes.fromhex(seed_hex)
    if hashlib.sha256(seed).hexdigest() != commitment:
        problems.append("SHA-256(seed) is not the commitment")
    listed = [str(item["entry_id"]) for item in listing]
    if sorted(listed) != sorted(entries):
        problems.append(f"the listing holds {len(listed)} entries, not the {len(entries)} made")
    if listed != rank_order(seed, listed):
        problems.append("the ranks do not follow HMAC-SHA256(seed, entry id) ascending")
    if [item["rank"] for item in listing] != list(range(1, len(listing) + 1)):
        problems.append("the ranks are not 1, 2, 3, ...")
    left = dict(capacity)
    for item in listing:
        entry = entries.get(str(item["entry_id"]))
        if entry is None:
            continue
        refused = entry.lost_reason not in (None, "no_seats")
        got = None
        if not refused:
            got = next((c for c in entry.choices if left.get(c, 0) >= entry.party_size), None)
        if item["start"] != got or item["status"] != ("won" if got else "lost"):
            problems.append(
                f"rank {item['rank']} ({item['entry_id']}): {item['status']} "
                f"{item['start']}, the rule gives {got or 'lost'}"
            )
            if len(problems) > 10:
                break
        if got is not None:
            left[got] -= entry.party_size
    return problems


def oversold(windows: Iterable[Mapping[str, int]]) -> int:
    """Seats sold beyond capacity, window by window (Postgres's bookings and its own count)."""
    return sum(
        max(0, int(w["sold"]) - int(w["capacity"]), int(w["booked"]) - int(w["capacity"]))
        for w in windows
    )


def with_figures(line: str, figures: Mapping[str, Any] | None) -> str:
    """The bench's last JSON line with the key "lottery" added (when the scenario ran)."""
    if figures is None:
        return line
    found = json.loads(line)
    found["lottery"] = dict(figures)
    return json.dumps(found, separators=(", ", ": "))


def metric_sum(text: str, name: str) -> tuple[float, float]:
    """(`_sum`, `_count`) of an unlabelled histogram in a Prometheus text exposition."""
    total = count = 0.0
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        with suppress(ValueError):
            if key == f"{name}_sum":
                total = float(value)
            elif key == f"{name}_count":
                count = float(value)
    return total, count


def label_of(status: int, body: bytes) -> tuple[str, str | None]:
    """`201` and its `id`, or `409 code` and the id the problem names (entry or booking)."""
    try:
        found = json.loads(body) if body else {}
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        found = {}
    if status < 400:
        ref = found.get("id")
        return str(status), ref if isinstance(ref, str) else None
    code = found.get("code")
    label = f"{status} {code}" if isinstance(code, str) else str(status)
    ref = found.get("entry_id") or found.get("booking_id")
    return label, ref if isinstance(ref, str) else None


# ---------------------------------------------------------------- the crowd on the wire


@dataclass
class Wave:
    """What one wave of requests was answered, and how fast."""

    answers: list[Answer]
    seconds: float  # first send to last answer
    conn_errors: int

    @property
    def per_s(self) -> float:
        return round(len(self.answers) / self.seconds, 1) if self.seconds else 0.0

    def labels(self) -> Counter[str]:
        return Counter(a.label for a in self.answers)


async def _wave(
    host: str,
    port: int,
    requests: Sequence[bytes],
    identities: Sequence[int],
    connections: int,
    go: bytes | None = None,
    keep_bodies: bool = False,
) -> Wave:
    """Send `requests` over `connections` keep-alive connections, all opened first; then `go`
    (one request on a connection of its own, answered 2xx), then every connection at once.
    Each answer keeps its body if `keep_bodies`, else only an unexpected one's start."""
    answers: list[Answer] = []
    queue = iter(range(len(requests)))
    conn_errors = 0
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal conn_errors
        for attempt in range(5):
            try:
                return await asyncio.open_connection(host, port)
            except OSError:
                conn_errors += 1
                await asyncio.sleep(0.05 * (attempt + 1))
        return await asyncio.open_connection(host, port)

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        writer.write(request)
        buf = bytearray()
        while (found := parse_response(buf)) is None:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("closed before the answer")
            buf += chunk
        return found[0], found[1]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal conn_errors
        for n in queue:
            sent = time.perf_counter()
            try:
                status, body = await exchange(reader, writer, requests[n])
            except (OSError, ConnectionError):
                conn_errors += 1
                answers.append(Answer(identities[n], "connection lost", None, 0.0))
                writer.close()
                reader, writer = await connect()
                continue
            label, ref = label_of(status, body)
            if keep_bodies:
                keep = body
            else:
                keep = body[:300] if label not in ENTRY_ANSWERS + BOOKING_ANSWERS else b""
            answers.append(Answer(identities[n], label, ref, time.perf_counter() - sent, body=keep))
        writer.close()

    for _ in range(min(connections, len(requests))):
        streams.append(await connect())
    if go is not None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            status, body = await exchange(reader, writer, go)
        finally:
            writer.close()
        if not 200 <= status < 300:
            raise RuntimeError(f"the go request was answered {status}: {body[:200]!r}")
    t0 = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(worker(r, w) for r, w in streams)), timeout=TIME_LIMIT_S
    )
    return Wave(answers, time.perf_counter() - t0, conn_errors)


def wave(
    host: str,
    port: int,
    requests: Sequence[bytes],
    identities: Sequence[int],
    connections: int,
    go: bytes | None = None,
    keep_bodies: bool = False,
) -> Wave:
    coro = _wave(host, port, requests, identities, connections, go, keep_bodies)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _post(host: str, port: int, token: str, path: str, body: Mapping[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _get(host: str, port: int, token: str, path: str) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    return head.encode()


# ---------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class Setup:
    """Where the scenario runs: the API (on the test clock), its admin key, Postgres."""

    host: str
    port: int
    token: str  # admin, bookings:read, bookings:write
    database_url: str
    settings: Settings
    tag: int  # in people's ids (loadgen.person)
    first_person: int
    suffix: str = ""  # of the offices' ids
    shape: CrowdShape = field(default_factory=CrowdShape)
    connections: int = CONNECTIONS


@dataclass
class Fairness:
    """The scenario's figures (`figures`: the last line's "lottery"), lines and verdict."""

    figures: dict[str, Any]
    lines: str
    ok: bool
    persons: int  # identities used (the bench's next person moves on by as many)
    details: dict[str, Any] = field(default_factory=dict)


def starts() -> list[str]:
    return [
        f"{(8 * 60 + i * WINDOW_MINUTES) // 60:02d}:{(8 * 60 + i * WINDOW_MINUTES) % 60:02d}"
        for i in range(WINDOWS)
    ]


def office_body(office: str, lottery: bool) -> dict[str, Any]:
    end = 8 * 60 + WINDOWS * WINDOW_MINUTES
    hours = {"start": "08:00", "end": f"{end // 60:02d}:{end % 60:02d}"}
    body: dict[str, Any] = {
        "name": f"Bench office {office}",
        "timezone": TIMEZONE,
        "services": [SERVICE_ID],
        "window_minutes": WINDOW_MINUTES,
        "hours": {d: [hours | {"capacity": SEATS_PER_WINDOW}] for d in WEEKDAYS},
    }
    if lottery:
        body["release"] = {
            "mode": "lottery",
            "entries_open": ENTRIES_OPEN,
            "max_choices": MAX_CHOICES,
        }
    return body


def _person(setup: Setup, n: int, bot: bool) -> dict[str, str]:
    id_number, phone = person(setup.first_person + n, setup.tag)
    name = "BENCH BOT" if bot else "BENCH HUMAN"
    return {"id_type": "passport", "id_number": id_number, "name": name, "phone": phone}


async def _windows(url: str, office: str, day: date) -> list[dict[str, int]]:
    sql = """
        SELECT to_char(w.start_time, 'HH24:MI') AS start, w.capacity, w.booked,
               coalesce(sum(b.party_size) FILTER (WHERE b.status <> 'cancelled'), 0) AS sold
        FROM windows w LEFT JOIN bookings b ON b.window_id = w.id
        WHERE w.office_id = $1 AND w.day = $2
        GROUP BY w.id ORDER BY w.start_time
    """
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(sql, office, day)
    finally:
        await conn.close()
    return [{k: r[k] for k in ("start", "capacity", "booked", "sold")} for r in rows]


def windows_in_postgres(url: str, office: str, day: date) -> list[dict[str, int]]:
    return asyncio.run(_windows(url, office, day))


def _listing(http: httpx.Client, office: str, day: date) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = call(
            http,
            "GET",
            f"/v1/offices/{office}/releases/{day.isoformat()}/draw",
            params={"after": str(after), "limit": "1000"},
        )
        items += page["items"]
        if page["next"] is None:
            return items
        after = int(page["next"])


def _metrics(http: httpx.Client) -> str:
    return http.get("/metrics").text


def run(http: httpx.Client, setup: Setup, progress: Callable[[str], None]) -> Fairness:
    """The scenario, through `http` (a client of the API with the admin key)."""
    # The crowd's order: a shuffle, no secret.
    shape, rng = setup.shape, random.Random(setup.tag)  # nosec B311
    host, port, token = setup.host, setup.port, setup.token
    tz = ZoneInfo(TIMEZONE)
    lottery_office = f"bench-lottery{setup.suffix}"
    first_office = f"bench-first-come{setup.suffix}"
    opening = datetime.combine(datetime.now(tz).date() + timedelta(days=3), dtime(0), tz)
    day = opening.date() + timedelta(days=setup.settings.horizon_days)
    draw_at = opens_at(day, tz, setup.settings)
    entry_time = datetime.combine(draw_at.date() - timedelta(days=1), dtime(18, 1), tz)
    capacity = dict.fromkeys(starts(), SEATS_PER_WINDOW)

    # 1. the lottery
    call(http, "PUT", "/v1/admin/clock", {"now": entry_time.isoformat()})
    call(http, "PUT", f"/v1/offices/{lottery_office}", office_body(lottery_office, True))
    call(http, "PUT", f"/v1/offices/{first_office}", office_body(first_office, False))
    record_path = f"/v1/offices/{lottery_office}/releases/{day.isoformat()}"
    opened = call(http, "GET", record_path)
    if opened["status"] != "taking_entries" or not opened["commitment"]:
        raise RuntimeError(f"{record_path} in the entry period: {opened}")
    commitment = str(opened["commitment"])
    choices = {i: rng.sample(starts(), MAX_CHOICES) for i in range(shape.identities)}
    order = shape.order(rng)
    bodies = {
        i: _post(
            host,
            port,
            token,
            "/v1/entries",
            {
                "office_id": lottery_office,
                "service_id": SERVICE_ID,
                "date": day.isoformat(),
                "choices": choices[i],
                "party_size": 1,
                "person": _person(setup, i, shape.is_bot(i)),
                "channel": "app",
            },
        )
        for i in range(shape.identities)
    }
    progress(
        f"lottery: clock {entry_time.isoformat()}, {len(order)} entries ({shape.describe()}) "
        f"over {setup.connections} connections ..."
    )
    entered = wave(host, port, [bodies[i] for i in order], order, setup.connections)
    tally = tally_entries(entered.answers, shape)
    # Then the bots again, every identity entered: what a repeat alone costs (the hint's path).
    bot_order = [i for i in order if shape.is_bot(i)]
    progress(f"lottery: the bots again, {len(bot_order)} repeats ...")
    again = wave(host, port, [bodies[i] for i in bot_order], bot_order, setup.connections)
    wrong_again = [
        a
        for a in again.answers
        if a.label != "409 entry_exists" or a.ref is None or a.ref != tally.entry_of.get(a.identity)
    ]
    same_entry = tally.same_entry and not wrong_again
    before_draw = call(http, "GET", record_path)

    call(http, "PUT", "/v1/admin/clock", {"now": draw_at.isoformat()})
    pending = call(http, "GET", record_path)["status"]
    draw_sum, draw_count = metric_sum(_metrics(http), "slots_draw_duration_seconds")
    progress(f"lottery: clock {draw_at.isoformat()} (record {pending}); draw-releases ...")
    t0 = time.perf_counter()
    job = call(http, "POST", "/v1/admin/jobs/draw-releases")["result"]
    job_ms = (time.perf_counter() - t0) * 1000
    after_sum, after_count = metric_sum(_metrics(http), "slots_draw_duration_seconds")
    draw_ms = (after_sum - draw_sum) * 1000 if after_count > draw_count else None
    drawn = call(http, "GET", record_path)
    listing = _listing(http, lottery_office, day)
    ids = [str(item["entry_id"]) for item in listing]
    progress(f"lottery: drawn {job}; reading {len(ids)} entries ...")
    read = wave(
        host,
        port,
        [_get(host, port, token, f"/v1/entries/{e}") for e in ids],
        list(range(len(ids))),
        min(setup.connections, 100),
        keep_bodies=True,
    )
    # The entries as the service answers them (GET /v1/entries/{id}), by id.
    got: dict[str, dict[str, Any]] = {ids[a.identity]: {} for a in read.answers}
    for a in read.answers:
        with suppress(ValueError):
            found = json.loads(a.body) if a.label == "200" else {}
            got[ids[a.identity]] = found if isinstance(found, dict) else {}
    entries = {
        e: Drawn(tuple(v.get("choices", ())), int(v.get("party_size", 1)), v.get("lost_reason"))
        for e, v in got.items()
    }
    problems = []
    if drawn.get("seed") is None:
        problems.append(f"no seed revealed: {drawn}")
    else:
        problems = verify(str(drawn["seed"]), commitment, listing, entries, capacity)
    if drawn.get("commitment") != commitment:
        problems.append("the commitment changed after the entry period")
    by_item = {str(item["entry_id"]): item for item in listing}
    mismatched = [
        e
        for e, v in got.items()
        if v.get("status") != by_item[e]["status"]
        or (v.get("status") == "won") != (v.get("booking_id") is not None)
    ]
    if mismatched:
        problems.append(
            f"{len(mismatched)} entries disagree with the listing, e.g. {mismatched[0]}"
        )
    identity_of = {e: i for i, e in tally.entry_of.items()}
    won_by = [identity_of[e] for e, item in by_item.items() if item["status"] == "won"]
    unknown = sum(1 for e in ids if e not in identity_of)
    if unknown:
        problems.append(f"{unknown} drawn entries were never answered 201 to the crowd")
    share_lottery = share(won_by, shape)
    lottery_windows = windows_in_postgres(setup.database_url, lottery_office, day)

    # 2. first come, first served: the same shape of crowd, new identities, at the opening
    fc_day = day + timedelta(days=1)
    fc_opens = opens_at(fc_day, tz, setup.settings)
    call(http, "PUT", "/v1/admin/clock", {"now": (fc_opens - timedelta(minutes=10)).isoformat()})
    call(http, "POST", "/v1/admin/jobs/open-horizon")
    fc_order = shape.order(rng)
    offset = shape.identities
    people = {i: _person(setup, offset + i, shape.is_bot(i)) for i in range(shape.identities)}
    fc_requests = [
        _post(
            host,
            port,
            token,
            "/v1/bookings",
            {
                "office_id": first_office,
                "service_id": SERVICE_ID,
                "date": fc_day.isoformat(),
                "start": rng.choice(starts()),
                "person": people[i],
            },
        )
        for i in fc_order
    ]
    progress(
        f"first come: {len(fc_requests)} booking attempts wait on {setup.connections} "
        f"connections; the clock crosses {fc_opens.isoformat()} ..."
    )
    go = clock_request(host, port, token, fc_opens).encode("latin-1")
    rushed = wave(host, port, fc_requests, fc_order, setup.connections, go=go)
    fc_winners = [a.identity for a in rushed.answers if a.label == "201"]
    share_first = share(fc_winners, shape)
    fc_windows = windows_in_postgres(setup.database_url, first_office, fc_day)

    # the verdict
    over = oversold(lottery_windows) + oversold(fc_windows)
    lottery_sold = sum(int(w["sold"]) for w in lottery_windows)
    fc_sold = sum(int(w["sold"]) for w in fc_windows)
    fc_unexpected = {k: v for k, v in rushed.labels().items() if k not in BOOKING_ANSWERS}
    read_unexpected = {k: v for k, v in read.labels().items() if k != "200"}
    twice = len(fc_winners) - len(set(fc_winners))
    ok = (
        not problems
        and tally.one_each
        and same_entry
        and not tally.others
        and over == 0
        and lottery_sold == int(drawn["won"])
        and fc_sold == len(fc_winners)
        and not fc_unexpected
        and not read_unexpected
        and twice == 0
        and before_draw["entries"] == tally.accepted
    )
    figures = {
        "bots_share_lottery": _round(share_lottery),
        "bots_share_first_come": _round(share_first),
        "entries": tally.accepted,
        "repeats": tally.repeats,
        "same_entry": same_entry,
        "draw_ms": None if draw_ms is None else round(draw_ms),
        "oversold": over,
    }
    seats = WINDOWS * SEATS_PER_WINDOW
    lat = latency_summary([a.seconds for a in entered.answers])
    fc_lat = latency_summary([a.seconds for a in rushed.answers])
    again_lat = latency_summary([a.seconds for a in again.answers])
    bot_wins = sum(1 for i in won_by if shape.is_bot(i))
    fc_bot_wins = sum(1 for i in fc_winners if shape.is_bot(i))
    lines = [
        f"lottery        {shape.describe()}; {seats} seats a day ({WINDOWS} windows x "
        f"{SEATS_PER_WINDOW}), {setup.connections} connections firing at once",
        f"  entries ({lottery_office} {day}, clock {entry_time.isoformat()}): "
        f"{len(entered.answers)} requests in {entered.seconds:.2f} s ({entered.per_s} answers/s, "
        f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} ms, {entered.conn_errors} connection "
        f"errors); accepted {tally.accepted} for {tally.identities_entered} identities "
        f"(exactly one per identity: {_yes(tally.one_each)}); repeats answered 409 entry_exists "
        f"{tally.repeats}, each naming its identity's entry: {_yes(tally.same_entry)}"
        + (f" ({len(tally.wrong_repeats)} did not)" if tally.wrong_repeats else "")
        + f"; other answers: {_counts(tally.others)}",
        f"  the bots again, once every identity had entered: {len(again.answers)} repeats in "
        f"{again.seconds:.2f} s ({again.per_s} answers/s, p50 {_ms(again_lat['p50'])} p99 "
        f"{_ms(again_lat['p99'])} ms): {_counts(again.labels())}; each naming its identity's "
        f"entry: {_yes(not wrong_again)}",
        f"  draw at {draw_at.isoformat()} (record {pending} before): {drawn['entries']} entries, "
        f"{drawn['won']} won, {drawn['lost']} lost; slots_draw_duration_seconds "
        f"{_ms(draw_ms)} ms, the job call {job_ms:.0f} ms; read back: the record, "
        f"{len(listing)} listed, {len(got)} entries ({_counts(read_unexpected)} unexpected)",
        "  "
        + (
            "verified: SHA-256(seed) == the commitment published during the entry period, "
            "ranks = HMAC-SHA256(seed, entry id) ascending, each entry won the first of its "
            "choices with a seat left"
            if not problems
            else "NOT VERIFIED: " + "; ".join(problems[:5])
        ),
        f"  first come ({first_office} {fc_day}, opened at {fc_opens.isoformat()} under the "
        f"crowd): {len(rushed.answers)} attempts in {rushed.seconds:.2f} s ({rushed.per_s} "
        f"answers/s, p50 {_ms(fc_lat['p50'])} p99 {_ms(fc_lat['p99'])} ms, "
        f"{rushed.conn_errors} connection errors): {_counts(rushed.labels())}",
        f"  bots' share of seats: lottery {_pct(share_lottery)} ({bot_wins} of {len(won_by)}), "
        f"first come, first served {_pct(share_first)} ({fc_bot_wins} of {len(fc_winners)}); "
        f"their share of identities {_pct(shape.bots / shape.identities)}",
        f"  oversold: {over} (Postgres: lottery day {lottery_sold} of "
        f"{sum(capacity.values())} seats sold, first-come day {fc_sold}; identities holding two "
        f"first-come seats: {twice})" + ("" if ok else "; CHECKS FAILED"),
    ]
    odd = [*tally.wrong_repeats[:3], *wrong_again[:3], *(x for x in entered.answers if x.body)]
    for a in odd[:5]:
        lines.append(f"  unexpected entry answer: {a.label} {a.ref} {a.body!r}")
    for a in [x for x in rushed.answers if x.body][:3]:
        lines.append(f"  unexpected booking answer: {a.label} {a.body!r}")
    details = {
        "figures": figures,
        "entries_answers": dict(entered.labels()),
        "entries_answers_per_s": entered.per_s,
        "entries_latency_ms": lat,
        "repeats_alone": {
            "answers": dict(again.labels()),
            "per_s": again.per_s,
            "latency_ms": again_lat,
        },
        "draw": {"job": job, "job_ms": round(job_ms), "record": drawn},
        "verified": not problems,
        "problems": problems,
        "first_come_answers": dict(rushed.labels()),
        "first_come_latency_ms": fc_lat,
        "lottery_windows": lottery_windows,
        "first_come_windows": fc_windows,
        "ok": ok,
    }
    return Fairness(figures, "\n".join(lines), ok, 2 * shape.identities, details)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def _counts(found: Mapping[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(found.items())) if found else "none"
