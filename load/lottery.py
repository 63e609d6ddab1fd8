"""Fairness under bots (issue 11), for locust 2.47+ (``pip install -e '.[load]'``).

A crowd of distinct identities, 1 bot in 10 (``Bot``, weight 1; ``Human``, weight 9: run it
with ``-u 2000`` for 200 bots and 1 800 humans). Each locust user is one identity. Once every
user has spawned, they all fire at once: a bot sends ``SLOTS_LOAD_BOT_REQUESTS`` (50) requests
with its identity concurrently, a human one; then the user is done. What they send depends on
``SLOTS_LOAD_RELEASE``:

- ``lottery`` (default): entries (``POST /v1/entries``) into the draw of a day of a new office
  in lottery mode; the test clock is set into the entry period before the users fire. When
  every user is done, the clock moves to the draw instant, ``POST
  /v1/admin/jobs/draw-releases`` draws, and the file reads the public record (the release and
  its ``/draw`` listing) and every entry, verifies the draw from them (SHA-256(seed) is the
  commitment, ranks follow HMAC-SHA256(seed, entry id), outcomes follow the choices) and
  prints the bots' share of seats (expected: their share of identities), the entries accepted
  (one per identity), the repeats answered 409 ``entry_exists`` and whether each named the
  identity's entry.
- ``first_come``: booking attempts (``POST /v1/bookings``, each at a random window) on a day
  of a new first-come office, at the instant it opens: the users wait until the clock has
  crossed it. Printed: the bots' share of the seats.

Both print ``oversold`` (201s beyond the day's seats) and exit 1 when a check fails. The run
ends by itself once the crowd is done (or at ``-t``, whichever comes first).

Configuration (environment): ``SLOTS_LOAD_API_KEY`` (required; scopes ``admin``,
``bookings:read``, ``bookings:write``: the key ``make dev`` prints has them),
``SLOTS_LOAD_RELEASE`` (``lottery``), ``SLOTS_LOAD_BOT_REQUESTS`` (50), ``SLOTS_LOAD_SEATS``
(200, in 10 windows). The service must run with ``SLOTS_TEST_CLOCK=1`` (``SLOTS_TEST_CLOCK=1
make dev``): the file moves its clock forward. Each run makes its own service, offices and
people (a run tag), so runs never meet. Loopback hosts only; ``-t`` required; one process
(no ``--master``/``--worker``)::

    export SLOTS_LOAD_API_KEY=...
    locust -f load/lottery.py --headless -u 2000 -r 500 -t 180s --host http://127.0.0.1:8000
    SLOTS_LOAD_RELEASE=first_come \\
        locust -f load/lottery.py --headless -u 2000 -r 500 -t 180s --host http://127.0.0.1:8000
"""

# mypy: disable-error-code="no-untyped-call, import-untyped"
# (locust's event hooks and response methods, and gevent, ship without full type hints)

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import os
import random
import sys
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event
import gevent.pool
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import LocalRunner, Runner

from slots_service.bench.lottery import Drawn, verify

log = logging.getLogger("slots.load.lottery")

TIMEZONE = "Asia/Shanghai"
WINDOWS = 10
SERVICE = "load-fairness"


class Refused(Exception):
    """The run must not start (bad host, key or settings)."""


@dataclass
class Run:
    """One run: its settings, its office and day, and what the crowd was answered."""

    base: str
    key: str
    mode: str
    bot_requests: int
    seats: int
    tag: int
    office: str = ""
    day: str = ""
    draw_at: str = ""
    commitment: str = ""
    starts: list[str] = field(default_factory=list)
    go: gevent.event.Event = field(default_factory=gevent.event.Event)
    users: int = 0
    done: int = 0
    finished: bool = False
    failed: bool = False
    answers: Counter[str] = field(default_factory=Counter)
    entry_of: dict[int, set[str]] = field(default_factory=dict)  # identity -> entries named
    made: dict[int, list[str]] = field(default_factory=dict)  # identity -> 201s' ids
    bots: set[int] = field(default_factory=set)


_run: Run | None = None
_identities = itertools.count()


# --- the API, outside the stats (plain urllib) ----------------------------------------------


def _check_loopback(host: str | None) -> str:
    if not host:
        raise Refused("no host: pass --host http://127.0.0.1:8000")
    parts = urlsplit(host)
    name = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not name:
        raise Refused(f"host {host!r} is not an http(s) URL such as http://127.0.0.1:8000")
    if name != "localhost":
        try:
            addr = ipaddress.ip_address(name)
        except ValueError:
            addr = None
        if addr is None or not addr.is_loopback:
            raise Refused(f"refusing host {host!r}: loopback only (127.0.0.0/8, localhost, ::1)")
    return host.rstrip("/")


def _api(run: Run, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
    """The JSON answer of one admin/setup call; anything but 2xx (or `ok`) refuses."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        run.base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {run.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")[:300]
        if e.code in ok:
            return json.loads(text or "{}")
        hint = {
            401: "SLOTS_LOAD_API_KEY is not one of the service's keys",
            403: "the key needs scopes admin, bookings:read, bookings:write",
        }.get(e.code, "")
        if path == "/v1/admin/clock" and e.code == 404:
            hint = "start the service with SLOTS_TEST_CLOCK=1 (SLOTS_TEST_CLOCK=1 make dev)"
        raise Refused(f"{method} {path} -> {e.code} {text} {hint}") from None
    except (urllib.error.URLError, OSError) as e:
        raise Refused(f"cannot reach {run.base}: {e}") from None
    return json.loads(raw) if raw else None


def _set_clock(run: Run, now: datetime | str) -> None:
    value = now if isinstance(now, str) else now.isoformat()
    _api(run, "PUT", "/v1/admin/clock", {"now": value})


def _prepare(run: Run) -> None:
    """A service and an office of this run; the day whose release the crowd meets; the clock
    set into its entry period (lottery) or ten minutes before it opens (first come)."""
    now = datetime.fromisoformat(_api(run, "GET", "/v1/admin/clock")["now"])
    per_window = max(1, run.seats // WINDOWS)
    run.starts = [f"{8 + i // 2:02d}:{30 * (i % 2):02d}" for i in range(WINDOWS)]
    _api(
        run,
        "PUT",
        f"/v1/services/{SERVICE}",
        {"name": "Load fairness", "cancel_cutoff": {"kind": "none"}, "max_party_size": 1},
    )
    run.office = f"load-{run.mode.replace('_', '-')}-{run.tag}"
    hours = [{"start": "08:00", "end": "13:00", "capacity": per_window}]
    office: dict[str, Any] = {
        "name": f"Load fairness {run.office}",
        "timezone": TIMEZONE,
        "services": [SERVICE],
        "window_minutes": 30,
        "hours": {d: hours for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    }
    if run.mode == "lottery":
        office["release"] = {"mode": "lottery", "entries_open": "18:00", "max_choices": 3}
    _api(run, "PUT", f"/v1/offices/{run.office}", office)
    lottery = run.office if run.mode == "lottery" else f"load-lottery-probe-{run.tag}"
    if run.mode != "lottery":  # the opening instant of a day, read from a lottery record
        probe = office | {"release": {"mode": "lottery", "entries_open": "18:00", "max_choices": 3}}
        _api(run, "PUT", f"/v1/offices/{lottery}", probe)
    # A day two or three days past the horizon: nothing has opened it yet.
    for ahead in range(16, 24):
        day = (now + timedelta(days=ahead)).date().isoformat()
        record = _api(run, "GET", f"/v1/offices/{lottery}/releases/{day}", ok=(404,))
        if record.get("status") == "scheduled":
            break
    else:
        raise Refused("found no day to release in the next three weeks")
    run.day, run.draw_at = day, str(record["draw_at"])
    if run.mode == "lottery":
        entries_open = datetime.fromisoformat(record["entries_open_at"])
        _set_clock(run, entries_open + timedelta(minutes=1))
        run.commitment = str(
            _api(run, "GET", f"/v1/offices/{lottery}/releases/{day}")["commitment"]
        )
    else:
        _set_clock(run, datetime.fromisoformat(run.draw_at) - timedelta(minutes=10))
        _api(run, "POST", "/v1/admin/jobs/open-horizon")
    log.info(
        "fairness run %d: %s, office %s, day %s (opens %s), %d seats",
        run.tag,
        run.mode,
        run.office,
        run.day,
        run.draw_at,
        per_window * WINDOWS,
    )


# --- the crowd ------------------------------------------------------------------------------


class Identity(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0
    requests_per_identity = 1

    def on_start(self) -> None:
        run = _run
        while run is None or not run.office:
            gevent.sleep(3600)  # refused at test start: wait to be stopped
            run = _run
        self.release = run
        self.identity = next(_identities)
        self.headers = {"Authorization": f"Bearer {run.key}"}
        n = self.identity
        bot = isinstance(self, Bot)
        self.person = {
            "id_type": "passport",
            "id_number": f"L{run.tag:04d}{n:07d}",
            "name": "LOAD BOT" if bot else "LOAD HUMAN",
            "phone": f"+8615{run.tag:04d}{n:05d}",
        }
        if bot:
            run.bots.add(n)
        run.users += 1
        self.choices = random.sample(run.starts, 3)

    def _send(self) -> None:
        run = self.release
        if run.mode == "lottery":
            path, name = "/v1/entries", "/v1/entries [crowd]"
            body: dict[str, Any] = {
                "office_id": run.office,
                "service_id": SERVICE,
                "date": run.day,
                "choices": self.choices,
                "person": self.person,
                "channel": "app",
            }
            fine = {"201", "409 entry_exists"}
        else:
            path, name = "/v1/bookings", "/v1/bookings [crowd]"
            body = {
                "office_id": run.office,
                "service_id": SERVICE,
                "date": run.day,
                "start": random.choice(run.starts),
                "person": self.person,
            }
            fine = {"201", "409 slot_full", "409 active_booking_exists", "409 daily_limit_reached"}
        for _attempt in range(3):  # a connection the server could not take yet: again
            if self._post(path, body, name, fine):
                return

    def _post(self, path: str, body: dict[str, Any], name: str, fine: set[str]) -> bool:
        """One request; False when it got no answer at all (a connection error)."""
        release = self.release
        with self.client.post(
            path, json=body, headers=self.headers, name=name, catch_response=True
        ) as resp:
            if resp.status_code == 0:
                resp.failure("connection error")
                release.answers["connection error"] += 1
                return False
            try:
                found = resp.json()
            except Exception:
                found = {}
            found = found if isinstance(found, dict) else {}
            code = found.get("code")
            label = str(resp.status_code) + (f" {code}" if isinstance(code, str) else "")
            release.answers[label] += 1
            if label == "201":
                release.made.setdefault(self.identity, []).append(str(found.get("id")))
            elif label == "409 entry_exists":
                release.entry_of.setdefault(self.identity, set()).add(str(found.get("entry_id")))
            if label in fine:
                resp.success()
            else:
                resp.failure(label)
            return True

    @task
    def fire(self) -> None:
        self.release.go.wait()
        count = self.requests_per_identity
        if count == 1:
            self._send()
        else:
            pool = gevent.pool.Pool(count)
            for _ in range(count):
                pool.spawn(self._send)
            pool.join()
        self.release.done += 1
        if self.release.done >= self.release.users and self.release.go.is_set():
            gevent.spawn(_finish, self.environment)
        raise StopUser


class Bot(Identity):
    """Sends its identity's requests all at once."""

    weight = 1
    requests_per_identity = int(os.environ.get("SLOTS_LOAD_BOT_REQUESTS", "50"))
    concurrency = min(10, max(1, requests_per_identity))  # its requests share 10 connections


class Human(Identity):
    """One request."""

    weight = 9


# --- the verdict ----------------------------------------------------------------------------


def _share(winners: list[int], run: Run) -> str:
    if not winners:
        return "-"
    bots = sum(1 for i in winners if i in run.bots)
    return f"{bots / len(winners) * 100:.1f} % ({bots} of {len(winners)})"


def _finish(environment: Environment) -> None:
    run = _run
    if run is None or run.finished or not run.office:
        return
    run.finished = True
    identities = run.users
    made = {i: ids for i, ids in run.made.items()}
    one_each = len(made) == identities and all(len(ids) == 1 for ids in made.values())
    print(f"\nfairness ({run.mode}): {identities} identities, {len(run.bots)} bots", flush=True)
    print("  answers: " + ", ".join(f"{k} x{v}" for k, v in sorted(run.answers.items())))
    fine = True
    if run.mode == "lottery":
        repeats = run.answers["409 entry_exists"]
        # Each identity's entries, as its 201s and its repeats' 409s named them (a 201 lost to
        # a timeout shows in its retry's 409): exactly one each, and no identity two 201s.
        named = {i: set(made.get(i, [])) | run.entry_of.get(i, set()) for i in range(identities)}
        same = all(len(v) == 1 for v in named.values())
        one_each = same and all(len(made.get(i, [])) <= 1 for i in range(identities))
        accepted = len(set().union(*named.values()))
        _set_clock(run, run.draw_at)
        job = _api(run, "POST", "/v1/admin/jobs/draw-releases")["result"]
        path = f"/v1/offices/{run.office}/releases/{run.day}"
        record = _api(run, "GET", path)
        listing: list[dict[str, Any]] = []
        after = 0
        while True:
            page = _api(run, "GET", f"{path}/draw?after={after}&limit=1000")
            listing += page["items"]
            if page["next"] is None:
                break
            after = page["next"]
        pool = gevent.pool.Pool(50)
        ids = [str(item["entry_id"]) for item in listing]
        read = pool.map(lambda e: _api(run, "GET", f"/v1/entries/{e}"), ids)
        entries = {
            e: Drawn(tuple(v["choices"]), int(v["party_size"]), v["lost_reason"])
            for e, v in zip(ids, read, strict=True)
        }
        capacity = dict.fromkeys(run.starts, max(1, run.seats // WINDOWS))
        problems = verify(str(record["seed"]), run.commitment, listing, entries, capacity)
        identity_of = {e: i for i, v in named.items() for e in v}
        winners = [identity_of.get(str(x["entry_id"]), -1) for x in listing if x["status"] == "won"]
        won = len(winners)
        print(
            f"  entries accepted {accepted} (one per identity: "
            f"{'yes' if one_each else 'NO'}); repeats answered 409 entry_exists {repeats}, "
            f"each naming the identity's one entry: "
            f"{'yes' if same else 'NO'}"
        )
        print(f"  draw: {job}; record {record['status']}, {record['won']} won")
        print("  verified" if not problems else "  NOT VERIFIED: " + "; ".join(problems[:5]))
        fine = one_each and same and not problems
    else:
        winners = [i for i, ids in made.items() for _ in ids]
        won = len(winners)
    seats = max(1, run.seats // WINDOWS) * WINDOWS
    oversold = max(0, won - seats)
    everyone = list(range(identities))
    print(f"  bots' share of seats: {_share(winners, run)}; of identities {_share(everyone, run)}")
    print(f"  oversold: {oversold} ({won} seats given of {seats})", flush=True)
    if oversold or not fine:
        run.failed = True
        environment.process_exit_code = 1
    if environment.runner is not None:
        environment.runner.quit()


# --- event hooks ----------------------------------------------------------------------------


def on_init(environment: Environment, runner: Runner | None = None, **_: Any) -> None:
    if runner is not None and not isinstance(runner, LocalRunner):
        sys.exit("load/lottery.py: runs in one process (no --master/--worker)")
    opts = environment.parsed_options
    if getattr(opts, "headless", False) and not getattr(opts, "run_time", None):
        sys.exit("load/lottery.py: every run must be bounded: pass -t/--run-time (e.g. -t 180s)")
    try:
        _check_loopback(environment.host)
        if not os.environ.get("SLOTS_LOAD_API_KEY", "").strip():
            raise Refused("SLOTS_LOAD_API_KEY is not set (the key `make dev` prints)")
        if os.environ.get("SLOTS_LOAD_RELEASE", "lottery") not in ("lottery", "first_come"):
            raise Refused("SLOTS_LOAD_RELEASE is lottery or first_come")
    except Refused as e:
        sys.exit(f"load/lottery.py: {e}")


def on_test_start(environment: Environment, **_: Any) -> None:
    global _run
    run = Run(
        base=_check_loopback(environment.host),
        key=os.environ["SLOTS_LOAD_API_KEY"].strip(),
        mode=os.environ.get("SLOTS_LOAD_RELEASE", "lottery"),
        bot_requests=Bot.requests_per_identity,
        seats=int(os.environ.get("SLOTS_LOAD_SEATS", "200")),
        tag=random.randrange(10_000),
    )
    try:
        _prepare(run)
    except Refused as e:
        log.error("run refused: %s", e)
        environment.process_exit_code = 1
        if environment.runner is not None:
            gevent.spawn_later(0.5, environment.runner.quit)
        return
    _run = run


def on_spawning_complete(user_count: int, **_: Any) -> None:
    """Everyone is here: the opening instant (first come), then all fire at once."""
    run = _run
    if run is None or run.go.is_set():
        return
    gevent.sleep(1)  # the last users' on_start
    if run.mode == "first_come":
        _set_clock(run, run.draw_at)
    log.info("go: %d users fire", run.users)
    run.go.set()


def on_quitting(environment: Environment, **_: Any) -> None:
    if _run is not None and not _run.finished:
        log.warning("the run ended before the crowd was done (-t): what was answered so far")
        _finish(environment)


events.init.add_listener(on_init)
events.test_start.add_listener(on_test_start)
events.spawning_complete.add_listener(on_spawning_complete)
events.quitting.add_listener(on_quitting)
