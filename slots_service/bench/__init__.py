"""`slots-service bench`: throughput and latency of the whole service on this machine.

What it measures: the real API (`slots-service serve`: granian, 1 worker) over loopback HTTP,
with the real Redis gate and Postgres arbiter behind it, in these scenarios:

- `book`: every request books a seat for a NEW person (the daily limit and "one active booking
  per service" would refuse a repeat) in an office with 10 000 seats in each window, spread
  over all its windows and days: all 201; the figure is bookings/s.
- `hot`: the same on ONE window of 200 000 seats (raised in Postgres: the API accepts at most
  10 000): every booking queues on that window's row; bookings/s, beside L_hot.
- `flash`: every connection books NEW people into one window of `--flash-capacity` seats at
  once: the first ones get 201, the rest 409 `slot_full` from the Redis gate; the figure is
  answers/s, and the run checks over HTTP that exactly `capacity` seats were sold.
- `availability`: GET one day's windows of that office (days in turn); the figure is req/s.
- `book-no-redis`: `book` again against an API started without REDIS_URL (Postgres alone).
- `book-sql`: Postgres's side of `book` alone (statement.py): the `book` statement with a new
  person's values, sent by the API's group commit from `--concurrency` callers in a process of
  its own, no HTTP, no Redis, no rules in Python; bookings/s beside L_pg, and so how much of
  L_pg the rules' statement itself leaves for the rest of the booking path.
- `flash-w2`, `availability-w2`: `flash` (on a window of its own) and `availability` with
  SLOTS_WORKERS=2; `book-w2`, `hot-w2` (only when asked for): `book` and `hot` so.
- `crowd`: the 00:00 release (crowd.py): a day of `--crowd-seats` seats that is not open yet,
  the API on the test clock, `slots-service scheduler` beside it; `--crowd-connections`
  connections (2 000) wait, the clock crosses the opening instant, and `--crowd-attempts`
  (20 000) bookings of distinct people arrive at once. Reported: answers/s, seats sold and
  oversold (counted in Postgres), the time from the first answer to the last 201, p50/p99,
  connection errors.
- `lottery` (issue 11, lottery.py; only when asked for): fairness. 2 000 identities, 10 % bots
  sending 50 entries each at once, enter a lottery office's draw on the test clock; the draw
  runs, is verified from its public record, and the same crowd books a first-come day for
  contrast. Reported: the bots' share of seats under each, entries accepted, repeats and the
  entry they named, the draw's time, oversold (Postgres).

How: embedded Postgres and Valkey under `--data` (wiped each run) unless DATABASE_URL /
REDIS_URL are set; migrations; a bench catalog made through the admin API; then, for each
scenario, the load generator in a separate process (loadgen.py: asyncio + uvloop, HTTP/1.1
keep-alive, `--concurrency` connections with one request in flight each, a fresh body per
request) runs `--warmup` seconds, then `--seconds` measured. Before each scenario but the first,
Postgres is settled (VACUUM, CHECKPOINT): the vacuuming and page writes the scenario before left
behind are done then, not charged to the next one. Latency is the time from
writing a request to having read its whole response. Each figure is printed beside the machine's
ceiling (the "L" figures, measured first in the same run with `--limits auto` by ceilings/, or
read from a file): book / L_pg (and / L_hot), flash / L_http_post, availability / L_http_get.
Those ceilings are each measured alone, with no application code; here the API, Postgres, Valkey
and the load generator share the same cores, so ratios well below 1 are expected. The last line
of stdout is one JSON object with every figure.

Beside each figure: what the API counted itself (gate answers and booking outcomes from
/metrics, its own mean handling time), the cores each process tree kept busy (API, Postgres,
Valkey, load generator, and the rest of the machine, from /proc), error lines in the API's
log, and checks made over HTTP: every 201 is a seat taken in Postgres, and the flash window
sold exactly its capacity. The per-person rate limit stays on (at 1 000 000/min, so one Redis
call per booking as in production, never a refusal); the test clock and the in-process
scheduler are off but in `crowd`. Exit status 1 when a check fails.

Output: progress on stderr; on stdout each scenario's lines, a table (figure, ratio to its
ceiling, the API's CPU per request), and last one JSON line of the figures as integers
(`issue_json`); every detail goes to `--data`/bench.json.

This module runs the servers and the scenarios, in order; beside it: loadgen.py (the load),
catalog.py (the offices booked into, and the checks of their seats), stats.py (what the
servers did: /metrics, log, CPU), limits.py and ceilings/ (the ceilings), report.py (what is
printed), procs.py (its children).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from ..config import Settings, environment, load_settings
from ..devservers import DevServers, die_with_parent, free_port
from . import crowd as crowds
from . import lottery as lotteries
from . import profile as profiling
from . import statement
from .catalog import (
    BIG_CAPACITY,
    HOT_CAPACITY,
    SERVICE_ID,
    TIMEZONE,
    Catalog,
    call,
    check_big,
    check_flash,
    check_hot,
    make_catalog,
)
from .ceilings import Durations
from .limits import Limits, read_limits
from .procs import CODE_ROOT, raise_open_files, run_child, stop_group
from .report import Scenario, issue_json, scenario_lines, summary_json, summary_table
from .stats import CpuMeter, parse_metrics, scan_log, server_side

SCENARIOS = (
    "book",
    "book-sql",
    "hot",
    "flash",
    "availability",
    "book-no-redis",
    "flash-w2",
    "availability-w2",
    "crowd",
    "book-w2",  # with SLOTS_WORKERS=2; not in the default set
    "hot-w2",
    "lottery",  # issue 11's fairness scenario (lottery.py); not in the default set
)


@dataclass(frozen=True)
class ApiConfig:
    """How the API of a scenario runs."""

    redis: bool = True
    workers: int = 1
    test_clock: bool = False  # and `slots-service scheduler` beside it (crowd)

    def label(self) -> str:
        return f"redis {'on' if self.redis else 'off'}, {self.workers} worker(s)" + (
            ", test clock" if self.test_clock else ""
        )


API_OF = {
    "book-no-redis": ApiConfig(redis=False),
    "flash-w2": ApiConfig(workers=2),
    "availability-w2": ApiConfig(workers=2),
    "book-w2": ApiConfig(workers=2),
    "hot-w2": ApiConfig(workers=2),
    "crowd": ApiConfig(test_clock=True),
    "lottery": ApiConfig(test_clock=True),
}
# The caller's settings that reach the API: they tune it, they change no rule.
_TUNING = {
    "SLOTS_DB_POOL_SIZE",
    "SLOTS_BOOK_BATCH_MAX",
    "SLOTS_BOOK_BATCH_IN_FLIGHT",
    "SLOTS_REDIS_TIMEOUT_S",
    "SLOTS_LOG_LEVEL",
}
# Files `--data` may hold from an earlier bench run (anything else: refuse to wipe it).
_OURS = {
    ".slots-bench",
    "pg",
    "valkey",
    "runtime",
    "postgres.log",
    "valkey.log",
    "api.log",
    "limits.log",
}


@dataclass
class Bench:
    args: argparse.Namespace
    root: Path
    env: dict[str, str] = field(default_factory=dict)  # the API's, but for its port
    token: str = field(default_factory=lambda: "bench-" + secrets.token_urlsafe(24))
    tag: int = field(default_factory=lambda: secrets.randbelow(100_000))  # in people's ids
    next_person: int = 0
    api: subprocess.Popen[bytes] | None = None
    api_config: ApiConfig = field(default_factory=ApiConfig)
    scheduler: subprocess.Popen[bytes] | None = None
    port: int = 0
    cpus: int = field(default_factory=lambda: os.cpu_count() or 0)
    started: float = field(default_factory=time.monotonic)
    profiles: list[Path] = field(default_factory=list)  # --profile: one per API start

    # -- output

    def say(self, text: str) -> None:
        print(text, flush=True)

    def progress(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench +{elapsed:5.1f}s] {text}", file=sys.stderr, flush=True)

    # -- the run

    def main(self) -> int:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per set-up request
        asked = {s.strip() for s in self.args.scenarios.split(",") if s.strip()}
        if unknown := sorted(asked - set(SCENARIOS)):
            print(f"bench: unknown scenarios {unknown}; known: {SCENARIOS}", file=sys.stderr)
            return 2
        names = [s for s in SCENARIOS if s in asked]  # in this order: fewest API restarts
        # The crowd's connections, each a socket here and one in the API (which inherits it).
        files = raise_open_files(int(self.args.crowd_connections) * 2 + 1024)
        self.progress(f"open files allowed: {files}")
        self._wipe()
        self.say(
            f"slots-service bench: {self.cpus} CPUs. The API (granian, 1 worker), Postgres, "
            "Valkey and the load generator all share them, while each L ceiling was measured "
            "alone (server on one core, client on the other): ratios well below 1 are expected."
        )
        durations = Durations(seconds=float(self.args.seconds), warmup=float(self.args.warmup))
        limits, limits_note = read_limits(
            str(self.args.limits), self.root, durations, self.progress
        )
        self.say(f"limits: {limits_note}")
        given = dict(environment())
        want_pg, want_redis = not given.get("DATABASE_URL"), not given.get("REDIS_URL")
        servers = DevServers(self.root, postgres=want_pg, redis=want_redis)
        if want_pg or want_redis:
            self.progress(f"starting embedded servers under {self.root}")
            servers.start()
        try:
            self.env = self._api_env(given, servers)
            return self._run(names, limits, external=not (want_pg and want_redis))
        finally:
            self._stop_scheduler()
            self._stop_api()
            servers.stop()

    def _api_env(self, given: Mapping[str, str], servers: DevServers) -> dict[str, str]:
        # Of the caller's SLOTS_* settings only the tuning knobs pass: the rest (test clock,
        # policies, keys, webhooks, in-process scheduler) would change what is measured.
        env = {k: v for k, v in given.items() if not k.startswith("SLOTS_") or k in _TUNING}
        env.update(
            DATABASE_URL=given.get("DATABASE_URL") or servers.database_url,
            REDIS_URL=given.get("REDIS_URL") or servers.redis_url,
            SLOTS_PII_KEY=secrets.token_hex(32),
            SLOTS_API_KEYS=f"{self.token}=admin,bookings:read,bookings:write",
            SLOTS_HOST="127.0.0.1",
            SLOTS_WORKERS="1",
            # Every request is a new person, far below this: the check still runs (one Redis
            # call per booking, as in production) but never refuses.
            SLOTS_RATE_LIMIT_PER_PERSON="1000000",
            SLOTS_RATE_LIMIT_PER_KEY="0",
        )
        return env

    def _run(self, names: list[str], limits: Limits | None, external: bool) -> int:
        """`external`: a DATABASE_URL or REDIS_URL was given, so the offices get a run's tag."""
        from ..db import migrate

        settings = load_settings(self.env)
        self.progress("migrating")
        asyncio.run(migrate(settings.database_url))
        self._start_api(ApiConfig())
        with self._client() as http:
            suffix = f"-{self.tag}" if external else ""
            catalog = make_catalog(http, int(self.args.flash_capacity), suffix)
            if "hot" in names or "hot-w2" in names:
                day, start = catalog.hot_slot
                crowds.raise_capacity(settings.database_url, catalog.hot, day, start, HOT_CAPACITY)
                call(http, "POST", "/v1/admin/jobs/reconcile")
        where = "given DATABASE_URL/REDIS_URL" if external else f"embedded under {self.root}"
        self.say(
            f"setup: Postgres + Valkey {where}; API on 127.0.0.1:{self.port} (Postgres pool "
            f"{settings.db_pool_size}); offices {catalog.big} ({len(catalog.days)} days x "
            f"{catalog.windows_per_day} windows x {BIG_CAPACITY} seats), {catalog.hot} (window "
            f"{' '.join(catalog.hot_slot)}, {HOT_CAPACITY} seats) and {catalog.flash} "
            f"(windows {catalog.flash_slot[0]} {catalog.flash_slot[1]} and "
            f"{catalog.flash_slot_w2[1]}, {catalog.flash_capacity} seats each); "
            f"{self.args.concurrency} connections, {self.args.warmup:g} s warm-up + "
            f"{self.args.seconds:g} s measured per scenario"
        )
        results: dict[str, Scenario] = {}
        checks: dict[str, Any] = {}
        created_big = 0  # 201s of every scenario that booked in the big office
        fairness: lotteries.Fairness | None = None
        for name in names:
            if results or fairness is not None:  # not on the fresh database: see settle()
                started = time.monotonic()
                done = crowds.settle(settings.database_url)
                self.progress(f"settled Postgres ({done}) in {time.monotonic() - started:.1f} s")
            config = API_OF.get(name, ApiConfig())
            if config != self.api_config:
                self._start_api(config)
            if name == "lottery":  # issue 11: lottery.py, printed apart from the table
                fairness = self._lottery(settings, suffix)
                checks.update(lottery=fairness.details, lottery_ok=fairness.ok)
                continue
            if name == "crowd":
                scenario = self._crowd(settings.horizon_days, suffix)
                checks.update(crowd_ok=scenario.result["crowd"]["ok"])
            elif name == "book-sql":
                scenario = self._statement(settings, catalog)
            else:
                scenario = self._measure(name, catalog)
            if name in ("book", "book-sql", "book-no-redis", "book-w2"):
                created_big += scenario.result["created_all"]
                with self._client() as http:
                    if name == "book-sql":  # booked in Postgres alone: the gate learns it
                        call(http, "POST", "/v1/admin/jobs/reconcile")
                    checks["book_consistent"] = check_big(http, catalog, created_big, scenario)
            elif name in ("hot", "hot-w2"):
                with self._client() as http:
                    checks["hot_consistent"] = check_hot(http, catalog, scenario)
            elif name in ("flash", "flash-w2"):
                slot = catalog.flash_slot if name == "flash" else catalog.flash_slot_w2
                with self._client() as http:
                    found = check_flash(http, catalog, scenario, slot)
                prefix = "flash_w2" if name == "flash-w2" else "flash"
                checks.update({k.replace("flash", prefix, 1): v for k, v in found.items()})
            results[name] = scenario
            self.say(scenario_lines(scenario, limits))
        self._stop_scheduler()
        self._stop_api()
        self.say(summary_table(results, limits))
        run = {
            "seconds": float(self.args.seconds),
            "warmup": float(self.args.warmup),
            "concurrency": int(self.args.concurrency),
            "cpus": self.cpus,
            "shared_cores": True,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        details = self.root / "bench.json"
        details.write_text(summary_json(results, limits, checks, run) + "\n")
        self.say(f"every detail: {details}")
        figures = fairness.figures if fairness is not None else None
        self.say(lotteries.with_figures(issue_json(results, limits), figures))
        failed = any(
            checks.get(key) is False
            for key in ("book_consistent", "hot_consistent", "flash_exact", "flash_w2_exact")
        ) or any(checks.get(key) is True for key in ("flash_oversold", "flash_w2_oversold"))
        failed = failed or checks.get("lottery_ok") is False
        return 1 if failed or checks.get("crowd_ok") is False else 0

    # -- servers

    def _wipe(self) -> None:
        """Empty `--data`, leaving pg/ and valkey/ to DevServers (it stops what a killed run
        left there first). Refuses a directory that holds anything else."""
        root = self.root
        if root.exists():
            strangers = sorted(p.name for p in root.iterdir() if p.name not in _OURS)
            if strangers and not (root / ".slots-bench").exists():
                raise SystemExit(
                    f"bench: {root} holds {strangers[:5]}: not a bench directory, not wiping it"
                )
            for path in root.iterdir():
                if path.name in ("pg", "valkey"):
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        root.mkdir(parents=True, exist_ok=True)
        (root / ".slots-bench").write_text("slots-service bench data; wiped on each run\n")

    @property
    def api_log(self) -> Path:
        return self.root / "api.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start_api(self, config: ApiConfig) -> None:
        """(Re)start the API on a new port as `config` says, and wait until it is ready."""
        self._stop_api()
        self.api_config, self.port = config, free_port()
        # No drain: between scenarios nobody routes to the stopped API. Its runtime files under
        # the bench's data directory (not the system's temp directory: an API stopped by a
        # signal leaves them behind, and the next start clears them).
        env = self._env_of(config) | {
            "SLOTS_PORT": str(self.port),
            "SLOTS_DRAIN_SECONDS": "0",
            "SLOTS_RUNTIME_DIR": str(self.root / "runtime"),
        }
        with self.api_log.open("ab") as log_file:
            log_file.write(f"=== bench: serve, {config.label()} ===\n".encode())
            log_file.flush()
            argv = [sys.executable, "-m", "slots_service", "serve"]
            if self.args.profile:
                self.profiles.append(self._profile_file(config))
                argv = profiling.wrap(argv, self.profiles[-1])
            self.api = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
                argv,
                cwd=CODE_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,  # Ctrl-C is ours to handle; we stop it in order
                preexec_fn=die_with_parent(),  # dies with us, like the dev servers
            )
        self.progress(f"API pid {self.api.pid} on port {self.port} ({config.label()})")
        self._wait_ready(config.redis)

    def _env_of(self, config: ApiConfig) -> dict[str, str]:
        env = dict(self.env, SLOTS_WORKERS=str(config.workers))
        if not config.redis:
            env["REDIS_URL"] = ""
        if config.test_clock:
            env["SLOTS_TEST_CLOCK"] = "1"
        return env

    def _start_scheduler(self) -> None:
        """`slots-service scheduler` beside the API, with its settings (the crowd's)."""
        self._stop_scheduler()
        env = self._env_of(self.api_config) | {"SLOTS_METRICS_PORT": "0"}
        with self.api_log.open("ab") as log_file:
            log_file.write(b"=== bench: scheduler ===\n")
            log_file.flush()
            self.scheduler = subprocess.Popen(
                [sys.executable, "-m", "slots_service", "scheduler"],
                cwd=CODE_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=die_with_parent(),
            )
        self.progress(f"scheduler pid {self.scheduler.pid}")

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            stop_group(self.scheduler, signal.SIGINT)
            self.scheduler = None

    def _wait_ready(self, redis: bool) -> None:
        assert self.api is not None
        deadline = time.monotonic() + 60
        last = ""
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"the API exited ({self.api.returncode}):\n{self._log_tail()}")
            try:
                r = httpx.get(f"{self.base_url}/readyz", timeout=2)
                last = f"{r.status_code} {r.text}"
                want = "ok" if redis else "degraded"
                if r.status_code == 200 and r.json().get("redis") == want:
                    return
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(f"the API was not ready after 60 s ({last}):\n{self._log_tail()}")

    def _stop_api(self) -> None:
        if self.api is not None:
            stop_group(self.api, signal.SIGINT)
            self.api = None
            if self.args.profile:  # py-spy wrote its file as the API stopped
                self.say(profiling.summary(self.profiles[-1]))

    def _profile_file(self, config: ApiConfig) -> Path:
        folder = Path(self.args.profile)
        folder.mkdir(parents=True, exist_ok=True)
        label = re.sub(r"[^a-z0-9]+", "-", config.label().lower()).strip("-")
        return folder / f"api-{len(self.profiles) + 1}-{label}.txt"

    def _metrics(self) -> dict[str, float]:
        """The API's counters this bench reads, from /metrics (empty if unreachable)."""
        try:
            text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        except httpx.HTTPError:
            return {}
        return parse_metrics(text)

    def _log_size(self) -> int:
        with suppress(OSError):
            return self.api_log.stat().st_size
        return 0

    def _log_since(self, since: int) -> str:
        """What the API logged from byte `since` on."""
        try:
            with self.api_log.open("rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._log_since(0).splitlines()[-lines:])

    def _server_pids(self) -> dict[str, int]:
        """The API's main process, and the embedded servers' (from their pid files)."""
        pids = {"api": self.api.pid} if self.api is not None else {}
        if self.scheduler is not None:
            pids["scheduler"] = self.scheduler.pid
        for name, pidfile in (("postgres", "pg/postmaster.pid"), ("valkey", "valkey/valkey.pid")):
            with suppress(OSError, ValueError, IndexError):
                pids[name] = int((self.root / pidfile).read_text().split()[0])
        return pids

    def _client(self) -> httpx.Client:
        """A client of the API with the bench's admin key."""
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    # -- scenarios

    def _measure(self, name: str, catalog: Catalog) -> Scenario:
        """One scenario through the load generator, with what the API counted and logged."""
        spec: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "token": self.token,
            "concurrency": int(self.args.concurrency),
            "warmup": float(self.args.warmup),
            "seconds": float(self.args.seconds),
        }
        note = ""
        if name in ("availability", "availability-w2"):
            spec["kind"] = "get"
            spec["paths"] = [
                f"/v1/offices/{catalog.big}/availability?service={SERVICE_ID}&from={d}&to={d}"
                for d in catalog.days
            ]
            note = f"one day ({catalog.windows_per_day} windows) per request"
        else:
            spec["kind"] = "book"
            spec["service_id"] = SERVICE_ID
            spec["tag"] = self.tag
            spec["first_person"] = self.next_person
            if name in ("flash", "flash-w2"):
                spec["office_id"] = catalog.flash
                spec["slots"] = [catalog.flash_slot if name == "flash" else catalog.flash_slot_w2]
            elif name in ("hot", "hot-w2"):
                spec["office_id"] = catalog.hot
                spec["slots"] = [catalog.hot_slot]
            else:
                spec["office_id"] = catalog.big
                spec["slots"] = catalog.slots
        return self._run_spec(name, spec, note)

    def _statement(self, settings: Settings, catalog: Catalog) -> Scenario:
        """`book-sql`: the big office's windows booked by statement.py, the API idle."""
        spec = statement.spec_of(
            settings,
            catalog.big,
            TIMEZONE,
            SERVICE_ID,
            tag=self.tag,
            first_person=self.next_person,
            concurrency=int(self.args.concurrency),
            warmup=float(self.args.warmup),
            seconds=float(self.args.seconds),
        )
        note = "the `book` statement by group commit, no HTTP, no Redis (statement.py)"
        return self._run_spec("book-sql", spec, note, child="statement")

    def _run_spec(
        self, name: str, spec: dict[str, Any], note: str, child: str = "loadgen"
    ) -> Scenario:
        log_from, metrics_from = self._log_size(), self._metrics()
        if spec.get("total"):
            self.progress(
                f"scenario {name}: {spec['total']} requests over {spec['concurrency']} "
                "connections ..."
            )
        else:
            self.progress(f"scenario {name}: {spec['warmup']:g} s + {spec['seconds']:g} s ...")
        result = self._child(spec, child)
        self.next_person += int(result["persons"])
        return Scenario(
            name,
            result,
            server=server_side(metrics_from, self._metrics()),
            log=scan_log(self._log_since(log_from)),
            note=note,
        )

    def _crowd(self, horizon_days: int, suffix: str) -> Scenario:
        """The 00:00 release of a day nobody opened, at crowd scale (crowd.py)."""
        url = self.env["DATABASE_URL"]
        crowd = crowds.plan(
            f"bench-crowd{suffix}",
            int(self.args.crowd_seats),
            horizon_days,
            datetime.now(UTC),
        )
        before = crowd.opens - timedelta(seconds=1)
        with self._client() as http:
            call(http, "PUT", "/v1/admin/clock", {"now": before.isoformat()})
            call(http, "PUT", f"/v1/offices/{crowd.office}", crowds.office_body(crowd))
        if crowds.windows_of(url, crowd.office, crowd.day):
            raise RuntimeError(f"{crowd.office} {crowd.day} was opened before its release")
        self.progress(
            f"crowd: test clock at {before.isoformat()}, {crowd.day} not planned; "
            "starting the scheduler"
        )
        self._start_scheduler()
        planned_s = crowds.wait_planned(url, crowd, timeout_s=60)
        self.progress(f"crowd: the scheduler planned {crowd.day} in {planned_s:.1f} s")
        spec: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "token": self.token,
            "concurrency": int(self.args.crowd_connections),
            "total": int(self.args.crowd_attempts),
            "warmup": 0.0,
            "seconds": 300.0,  # the crowd's time limit
            "kind": "book",
            "office_id": crowd.office,
            "service_id": SERVICE_ID,
            "slots": crowd.slots,
            "tag": self.tag,
            "first_person": self.next_person,
            "go": crowds.clock_request("127.0.0.1", self.port, self.token, crowd.opens),
        }
        note = (
            f"{crowd.office} {crowd.day}: {len(crowd.starts)} windows x "
            f"{crowd.seats_per_window} seats, opened by the scheduler at {crowd.opens.isoformat()}"
        )
        scenario = self._run_spec("crowd", spec, note)
        self._stop_scheduler()
        found = crowds.sold(url, crowd)
        result = scenario.result
        oversold = max(0, found["sold"] - found["capacity"]) + found["over"]
        first, last_201 = result.get("first_answer_ms"), result.get("last_201_ms")
        sellout = None if first is None or last_201 is None else max(0.0, last_201 - first)
        lat = result["latency_ms"]
        result["crowd"] = {
            "answers_per_s": result["answers_per_s"],
            "sold": found["sold"],
            "oversold": oversold,
            "sellout_ms": sellout,
            "p50_ms": lat["p50"],
            "p99_ms": lat["p99"],
            "conn_errors": result["conn_errors"],
            "created": result["created_all"],
            "booked": found["booked"],
            "capacity": found["capacity"],
            "ok": oversold == 0
            and found["sold"] == found["booked"] == result["created_all"] <= found["capacity"],
        }
        scenario.note += (
            f"\n  Postgres: sold {found['sold']} of {found['capacity']} (windows count "
            f"{found['booked']}), 201 answers {result['created_all']}, oversold {oversold}; "
            f"sold out {_ms(sellout)} ms after the first answer; {result['connections']} "
            f"connections, {result['conn_errors']} connection errors"
        )
        if timeline := result.get("created_timeline"):
            scenario.note += (
                f"\n  201s answered {_ms(timeline['first_ms'])} (first), "
                f"{_ms(timeline['half_ms'])} (half), {_ms(timeline['p90_ms'])} (90 %), "
                f"{_ms(timeline['last_ms'])} ms (last) after the first request; a 201 waited "
                f"{_ms(timeline['waited_p50_ms'])} ms (p50), "
                f"{_ms(timeline['waited_max_ms'])} ms (max)"
            )
        return scenario

    def _lottery(self, settings: Settings, suffix: str) -> lotteries.Fairness:
        """Issue 11's fairness scenario (lottery.py): its lines printed here."""
        setup = lotteries.Setup(
            host="127.0.0.1",
            port=self.port,
            token=self.token,
            database_url=self.env["DATABASE_URL"],
            settings=settings,
            tag=self.tag,
            first_person=self.next_person,
            suffix=suffix,
        )
        log_from = self._log_size()
        with self._client() as http:
            fairness = lotteries.run(http, setup, self.progress)
        self.next_person += fairness.persons
        log = scan_log(self._log_since(log_from))
        errors = f"\n  server log: {log.errors} error lines" if log.errors else ""
        self.say(fairness.lines + errors)
        return fairness

    def _child(self, spec: dict[str, Any], child: str = "loadgen") -> dict[str, Any]:
        """The load generator's (or `child`'s) result, with the cores each process tree kept
        busy."""
        meter = CpuMeter(self._server_pids())
        found = run_child(child, spec)
        found["cpu_cores"] = meter.stop(loadgen_cpu_s=float(found["cpu_s"]))
        found["cpu_s_by"] = {k: round(v, 3) for k, v in meter.seconds.items()}
        return found


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    """The `bench` subcommand."""
    bench = Bench(args, Path(args.data).resolve())
    try:
        with _sigterm_as_interrupt():
            return bench.main()
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        return 130
