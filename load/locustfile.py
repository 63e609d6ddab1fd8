"""Load scenarios for slots-service (locust 2.47+, ``pip install -e '.[load]'``).

Scenarios (pick one by class name, or by tag with ``--tags``; none named: all three, 6:3:1):

- ``MidnightRush`` (tag ``rush``): the flash crowd when a new day opens. Many distinct people
  POST /v1/bookings for the windows of ONE date at ONE office. 201 and 409 ``slot_full`` /
  ``daily_limit_reached`` / ``active_booking_exists`` are success by design; 5xx or any other
  answer is a failure.
- ``Browsers`` (tag ``browse``): people looking at availability, by office and by service.
- ``BookAndCancel`` (tag ``bookcancel``): book, cancel as the person, read the booking back.

Configuration (environment):

- ``SLOTS_LOAD_API_KEY`` (required): Bearer key with ``bookings:read`` and ``bookings:write``.
- ``SLOTS_LOAD_OFFICE`` (default ``sz-exit-entry-foreigners``).
- ``SLOTS_LOAD_SERVICE`` (default ``residence-permit-first``).
- ``SLOTS_LOAD_DATE`` (default: the first day in the availability with seats left).

The target must be a loopback address (127.0.0.0/8, ``localhost`` or ``[::1]``): any other host
is refused before a single request is sent. Every run is bounded by ``-t`` (run time): a
headless run without it is refused. Headless runs (``make dev`` serves on 127.0.0.1:8000)::

    export SLOTS_LOAD_API_KEY=...
    locust -f load/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --host http://127.0.0.1:8000 MidnightRush
    locust -f load/locustfile.py --headless -u 50 -r 10 -t 60s \\
        --host http://127.0.0.1:8000 Browsers
    locust -f load/locustfile.py --headless -u 20 -r 5 -t 60s \\
        --host http://127.0.0.1:8000 BookAndCancel
    locust -f load/locustfile.py --headless -u 300 -r 50 -t 120s \\
        --host http://127.0.0.1:8000 --tags rush browse    # a mix, by tag

At the end the MidnightRush outcome counts are printed, with the seats that were free at the
start: more bookings created than seats free means a seat was sold twice (exit code 1).
"""

# mypy: disable-error-code="no-untyped-call, import-untyped"
# (locust's event hooks and response methods, and gevent, ship without full type hints)

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import re
import string
import sys
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import gevent
from locust import FastHttpUser, User, between, events, tag, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.runners import Runner, WorkerRunner

log = logging.getLogger("slots.load")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# 409 answers that are the service doing its job under a crowd, not errors.
_BY_DESIGN = frozenset({"slot_full", "daily_limit_reached", "active_booking_exists"})


@dataclass(frozen=True)
class Settings:
    api_key: str
    office: str
    service: str
    date: str | None


@dataclass(frozen=True)
class Target:
    """What the test aims at, discovered from the availability endpoint at test start."""

    rush_date: str
    rush_windows: tuple[str, ...]
    rush_seats_at_start: int
    cancel_date: str
    cancel_windows: tuple[str, ...]


class Refused(Exception):
    """The run must not start (bad host, bad key, nothing to book)."""


_settings: Settings | None = None
_target: Target | None = None
# Per-process outcome counts ("rush:201", "rush:slot_full", ...); workers ship theirs to the master.
_outcomes: Counter[str] = Counter()


# --- configuration and safety checks -------------------------------------------------------


def _read_settings() -> Settings:
    api_key = os.environ.get("SLOTS_LOAD_API_KEY", "").strip()
    if not api_key:
        raise Refused(
            "SLOTS_LOAD_API_KEY is not set: export a key from the service's SLOTS_API_KEYS "
            "with scopes bookings:read,bookings:write (`make dev` prints one: 'dev API key')."
        )
    office = os.environ.get("SLOTS_LOAD_OFFICE", "sz-exit-entry-foreigners")
    service = os.environ.get("SLOTS_LOAD_SERVICE", "residence-permit-first")
    for name, value in (("SLOTS_LOAD_OFFICE", office), ("SLOTS_LOAD_SERVICE", service)):
        if not _ID_RE.match(value):
            raise Refused(f"{name}={value!r} is not a valid identifier ({_ID_RE.pattern})")
    day = os.environ.get("SLOTS_LOAD_DATE") or None
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise Refused(f"SLOTS_LOAD_DATE={day!r} is not YYYY-MM-DD") from None
    return Settings(api_key=api_key, office=office, service=service, date=day)


def _check_loopback(host: str | None) -> str:
    """Return the base URL if it points at this machine; raise Refused otherwise."""
    if not host:
        raise Refused("no host: pass --host http://127.0.0.1:8000")
    parts = urlsplit(host)
    name = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not name:
        raise Refused(f"host {host!r} is not an http(s) URL such as http://127.0.0.1:8000")
    if name == "localhost":
        return host.rstrip("/")
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        addr = None
    loopback = (
        isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.ip_network("127.0.0.0/8")
    ) or (isinstance(addr, ipaddress.IPv6Address) and addr == ipaddress.IPv6Address("::1"))
    if not loopback:
        raise Refused(
            f"refusing host {host!r}: load tests run only against loopback "
            "(127.0.0.0/8, localhost, [::1])"
        )
    return host.rstrip("/")


# --- discovery (plain urllib: not counted in the stats) -------------------------------------


def _get_json(base: str, path: str, settings: Settings, timeout: float = 10.0) -> Any:
    req = urllib.request.Request(
        base + path,
        headers={"Authorization": f"Bearer {settings.api_key}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            code = json.loads(e.read()).get("code")
        except (ValueError, AttributeError):
            code = None
        hint = {
            401: "SLOTS_LOAD_API_KEY is not one of the service's SLOTS_API_KEYS",
            403: "the key needs scopes bookings:read and bookings:write",
            404: "unknown office or service (SLOTS_LOAD_OFFICE / SLOTS_LOAD_SERVICE)",
        }.get(e.code, "unexpected answer")
        raise Refused(f"GET {path} -> {e.code} {code or ''}: {hint}") from None
    except (urllib.error.URLError, OSError) as e:
        raise Refused(f"cannot reach {base}: {e} (is the service running? `make dev`)") from None


def _availability(base: str, settings: Settings, day: str | None = None) -> list[dict[str, Any]]:
    query: dict[str, str] = {"service": settings.service}
    if day is not None:
        query |= {"from": day, "to": day}
    body = _get_json(
        base, f"/v1/offices/{quote(settings.office)}/availability?{urlencode(query)}", settings
    )
    days = body.get("days") if isinstance(body, dict) else None
    if not isinstance(days, list):
        raise Refused("availability answer has no 'days' list")
    return days


def _remaining(day: dict[str, Any]) -> int:
    return sum(int(w.get("remaining", 0)) for w in day.get("windows", []))


def _starts(day: dict[str, Any]) -> tuple[str, ...]:
    windows = day.get("windows", [])
    free = tuple(str(w["start"]) for w in windows if int(w.get("remaining", 0)) > 0)
    return free or tuple(str(w["start"]) for w in windows)  # all full: the gate still works


def _discover(base: str, settings: Settings) -> Target:
    days = [d for d in _availability(base, settings) if d.get("windows")]
    if not days:
        raise Refused(
            f"no open bookable day for {settings.office}/{settings.service} in the horizon "
            "(has the horizon been opened? `make dev` does it)"
        )
    if settings.date is not None:
        rush = next((d for d in days if d.get("date") == settings.date), None)
        if rush is None:
            raise Refused(f"SLOTS_LOAD_DATE={settings.date} is not an open day in the horizon")
    else:
        rush = next((d for d in days if _remaining(d) > 0), None)
        if rush is None:
            rush = days[0]
            log.warning("no seats left anywhere: MidnightRush will only exercise the gate")
    # Cancel far from the rush (and from tomorrow's cancel cutoff): the last day with seats.
    others = [d for d in days if d is not rush and _remaining(d) > 0]
    cancel = others[-1] if others else rush
    return Target(
        rush_date=str(rush["date"]),
        rush_windows=_starts(rush),
        rush_seats_at_start=_remaining(rush),
        cancel_date=str(cancel["date"]),
        cancel_windows=_starts(cancel),
    )


# --- people ---------------------------------------------------------------------------------


class Identities:
    """Distinct people. Phone and passport both derive from one number, so an identity that comes
    back (another worker, an earlier run) is the same person again, never a phone bound to
    someone else (409 phone_bound_to_other_person)."""

    _MOD = 10**8
    _STRIDE = 48_271  # coprime with 10**8: the sequence visits every number once

    def __init__(self, phone_prefix: str, letters: str) -> None:
        self._phone_prefix = phone_prefix
        self._letters = letters
        self._n = random.randrange(self._MOD)

    def next(self) -> dict[str, str]:
        n = self._n
        self._n = (n + self._STRIDE) % self._MOD
        digits = (n * 7_919 + 31_337) % self._MOD  # a bijection of n: passports never repeat
        return {
            "id_type": "passport",
            "id_number": f"{self._letters[n % len(self._letters)]}{digits:08d}",
            "name": "LOAD TEST",
            "phone": f"{self._phone_prefix}{n:08d}",
        }


# Disjoint letters, so rush people never share history with people who cancel.
_rush_people = Identities("+86139", string.ascii_uppercase[:13])
_cancel_people = Identities("+86137", string.ascii_uppercase[13:])


# --- users ----------------------------------------------------------------------------------


def _json_object(resp: ResponseContextManager) -> dict[str, Any]:
    """The response body if it is a JSON object, else {}."""
    try:
        body = resp.json()
    except Exception:
        return {}
    return body if isinstance(body, dict) else {}


def _problem_code(resp: ResponseContextManager) -> str:
    code = _json_object(resp).get("code")
    return code if isinstance(code, str) else ""


def _fail(resp: ResponseContextManager) -> None:
    if resp.status_code == 0:
        error = getattr(resp, "error", None) or resp.request_meta.get("exception")
        resp.failure(f"connection error: {error!r}")
    else:
        resp.failure(f"{resp.status_code} {_problem_code(resp) or 'unexpected'}")


class SlotsUser(FastHttpUser):
    abstract = True
    network_timeout = 15.0
    connection_timeout = 5.0
    settings: Settings
    target: Target

    def on_start(self) -> None:
        while _settings is None or _target is None:
            # The run was refused at test start (logged there) and the runner is stopping:
            # send nothing, just wait to be stopped.
            gevent.sleep(3600)
        self.settings = _settings
        self.target = _target

    def book(
        self, scenario: str, day: str, windows: tuple[str, ...], people: Identities
    ) -> dict[str, Any] | None:
        """POST /v1/bookings; return the booking on 201, None otherwise."""
        body = {
            "office_id": self.settings.office,
            "service_id": self.settings.service,
            "date": day,
            "start": random.choice(windows),
            "party_size": 1,
            "person": people.next(),
            "channel": "web",
            "reference": f"4403{random.randrange(10**13):013d}",
            "metadata": {"source": "locust"},
        }
        with self.client.post(
            "/v1/bookings",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
            name=f"/v1/bookings [{scenario}]",
            catch_response=True,
        ) as resp:
            if resp.status_code == 201:
                booking = _json_object(resp)
                if booking.get("status") != "booked" or not booking.get("id"):
                    resp.failure("201 without a booked booking")
                    return None
                resp.success()
                _outcomes[f"{scenario}:201"] += 1
                return booking
            code = _problem_code(resp)
            if resp.status_code == 409 and code in _BY_DESIGN:
                resp.success()
                _outcomes[f"{scenario}:{code}"] += 1
            else:
                _fail(resp)
                _outcomes[f"{scenario}:failed"] += 1
            return None


class MidnightRush(SlotsUser):
    """Flash crowd on the windows of one date: almost everyone should meet 409 slot_full."""

    weight = 6
    wait_time = between(0.05, 0.5)

    @tag("rush")
    @task
    def grab_a_seat(self) -> None:
        self.book("rush", self.target.rush_date, self.target.rush_windows, _rush_people)


class Browsers(SlotsUser):
    """People comparing days and offices before they click."""

    weight = 3
    wait_time = between(1.0, 3.0)

    def _get(self, path: str, name: str, key: str | None = None) -> None:
        """GET; success is 200 with a JSON object (holding `key`, when given)."""
        with self.client.get(path, name=name, catch_response=True) as resp:
            body = _json_object(resp)
            if resp.status_code == 200 and body and (key is None or key in body):
                resp.success()
            else:
                _fail(resp)

    @tag("browse")
    @task(3)
    def office_availability(self) -> None:
        office, service = quote(self.settings.office), quote(self.settings.service)
        self._get(
            f"/v1/offices/{office}/availability?service={service}",
            "/v1/offices/[office]/availability",
            key="days",
        )

    @tag("browse")
    @task(1)
    def service_availability(self) -> None:
        self._get(
            f"/v1/services/{quote(self.settings.service)}/availability",
            "/v1/services/[service]/availability",
        )


class BookAndCancel(SlotsUser):
    """Book, cancel as the person (seats free at once), read it back."""

    weight = 1
    wait_time = between(0.5, 2.0)

    @tag("bookcancel")
    @task
    def book_cancel_read(self) -> None:
        booking = self.book(
            "bookcancel", self.target.cancel_date, self.target.cancel_windows, _cancel_people
        )
        if booking is None:
            return
        path = f"/v1/bookings/{quote(str(booking['id']))}"
        with self.client.post(
            f"{path}/cancel",
            json={"by": "person", "reason": "load test"},
            name="/v1/bookings/[id]/cancel",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200 and _json_object(resp).get("status") == "cancelled":
                resp.success()
                _outcomes["bookcancel:cancelled"] += 1
            else:
                _fail(resp)
                return
        with self.client.get(path, name="/v1/bookings/[id]", catch_response=True) as resp:
            status = _json_object(resp).get("status")
            if resp.status_code == 200 and status == "cancelled":
                resp.success()
            elif resp.status_code == 200:
                resp.failure(f"read back status {status!r}, not 'cancelled'")
            else:
                _fail(resp)


# --- event hooks ----------------------------------------------------------------------------


def _keep_tagged_users(environment: Environment) -> None:
    """With --tags/--exclude-tags, drop user classes left without tasks (they would crash)."""
    opts = environment.parsed_options
    tags = set(getattr(opts, "tags", None) or ())
    exclude = set(getattr(opts, "exclude_tags", None) or ())
    if not tags and not exclude:
        return

    def runs(user_class: type[User]) -> bool:
        for t in user_class.tasks:
            tagset: set[str] = getattr(t, "locust_tag_set", set())
            if (not tags or tagset & tags) and not tagset & exclude:
                return True
        return False

    kept = [u for u in environment.user_classes if runs(u)]
    if kept:
        environment.user_classes[:] = kept


def on_init(environment: Environment, runner: Runner | None = None, **_: Any) -> None:
    global _settings
    try:
        _settings = _read_settings()
        SlotsUser.default_headers = {"Authorization": f"Bearer {_settings.api_key}"}
        if not isinstance(runner, WorkerRunner):  # a worker learns the host from the master
            opts = environment.parsed_options
            headless = bool(getattr(opts, "headless", False))
            if (headless or getattr(opts, "autostart", False)) and not getattr(
                opts, "run_time", None
            ):
                raise Refused("every run must be bounded: pass -t/--run-time (e.g. -t 60s)")
            if environment.host or headless:
                base = _check_loopback(environment.host)
                if headless:
                    _discover(base, _settings)  # fail fast, before any user starts
    except Refused as e:
        sys.exit(f"locustfile: {e}")
    _keep_tagged_users(environment)


def on_test_start(environment: Environment, **_: Any) -> None:
    global _target
    _target = None
    _outcomes.clear()
    runner = environment.runner
    try:
        base = _check_loopback(environment.host)  # the web UI may have changed it
        assert _settings is not None
        _target = _discover(base, _settings)
    except Refused as e:
        log.error("run refused: %s", e)
        if runner is not None and not isinstance(runner, WorkerRunner):
            headless = bool(getattr(environment.parsed_options, "headless", False))
            if headless:
                environment.process_exit_code = 1
            # After start() has returned: stopping from inside test_start would be undone.
            gevent.spawn_later(0.5, runner.quit if headless else runner.stop)
        return
    if not isinstance(runner, WorkerRunner):
        log.info(
            "target %s/%s: rush on %s windows %s (%d seats free), book-and-cancel on %s",
            _settings.office,
            _settings.service,
            _target.rush_date,
            ",".join(_target.rush_windows),
            _target.rush_seats_at_start,
            _target.cancel_date,
        )


def on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["slots_outcomes"] = dict(_outcomes)
    _outcomes.clear()


def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    _outcomes.update(data.get("slots_outcomes", {}))


def on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or _target is None or _settings is None:
        return
    rush = {k.split(":", 1)[1]: v for k, v in _outcomes.items() if k.startswith("rush:")}
    if not rush:
        return
    created = rush.get("201", 0)
    line = ", ".join(f"{k}={v}" for k, v in sorted(rush.items()))
    log.info("MidnightRush outcomes on %s: %s", _target.rush_date, line)
    try:
        base = _check_loopback(environment.host)
        now = sum(_remaining(d) for d in _availability(base, _settings, _target.rush_date))
        log.info(
            "seats: %d free at start, %d booked by the rush, %d free now",
            _target.rush_seats_at_start,
            created,
            now,
        )
    except Refused as e:
        log.warning("could not re-read availability: %s", e)
    if created > _target.rush_seats_at_start:
        log.error(
            "OVERSOLD: %d bookings created for %d free seats", created, _target.rush_seats_at_start
        )
        environment.process_exit_code = 1


events.init.add_listener(on_init)
events.test_start.add_listener(on_test_start)
events.report_to_master.add_listener(on_report_to_master)
events.worker_report.add_listener(on_worker_report)
events.quitting.add_listener(on_quitting)
