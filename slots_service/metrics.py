"""Prometheus collectors, defined once.

Under `slots-service serve` every granian worker is its own process: serve sets
PROMETHEUS_MULTIPROC_DIR (wiped at start) before it spawns them, each worker's values live in
files there, and a scrape of any worker adds up all of them (`exposition`). Gauges say how
(`multiprocess_mode`); a dead worker's live gauges are dropped (`mark_process_dead` in the
serve process). Without the directory (tests, `slots-service scheduler`) values stay in memory.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .config import environment

registry = CollectorRegistry(auto_describe=True)

bookings = Counter(
    "slots_bookings",
    "Booking attempts by outcome (created, or the problem code that ended them).",
    ["outcome"],
    registry=registry,
)
gate = Counter(
    "slots_redis_gate",
    "Redis gate answers: taken, full, missing (Postgres asked), bypassed (Redis down), "
    "duplicate (an Idempotency-Key's later request: the key answers).",
    ["result"],
    registry=registry,
)
book_batch_size = Histogram(
    "slots_book_batch_size",
    "Plain bookings decided in one transaction (group commit, group_commit.py).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=registry,
)
book_batches = Counter(
    "slots_book_batches",
    "Batches of bookings by how they ended: committed, rolled_back (then each decided alone),"
    " failed (the connection was lost).",
    ["outcome"],
    registry=registry,
)
statistics_refreshed = Counter(
    "slots_statistics_refreshed",
    "Tables of the booking path ANALYZEd because they outgrew their planner statistics"
    " (statistics.py).",
    ["table"],
    registry=registry,
)
redis_up = Gauge(
    "slots_redis_up",
    "1 while Redis answers, 0 while degraded (the lowest of the live workers).",
    registry=registry,
    multiprocess_mode="livemin",
)
http_latency = Histogram(
    "slots_http_request_duration_seconds",
    "HTTP request latency by route template, method and status.",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=registry,
)
job_runs = Counter(
    "slots_job_runs",
    "Scheduled job runs by job and outcome.",
    ["job", "outcome"],
    registry=registry,
)
job_duration = Histogram(
    "slots_job_duration_seconds",
    "Job run durations by job.",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=registry,
)
job_last_success = Gauge(
    "slots_job_last_success_timestamp_seconds",
    "Unix time of each job's last successful run.",
    ["job"],
    registry=registry,
    multiprocess_mode="max",
)
scheduler_leader = Gauge(
    "slots_scheduler_leader",
    "1 while this process holds the scheduler leader lock.",
    registry=registry,
    multiprocess_mode="livemax",
)
reconcile_corrected = Counter(
    "slots_reconcile_corrected",
    "Redis window counters that reconcile found absent or drifted and rewrote.",
    registry=registry,
)
events_published = Counter(
    "slots_events", "Events written to the outbox by type.", ["type"], registry=registry
)
entries = Counter(
    "slots_entries",
    "Entries into a draw (API 1.1) by outcome: entered, repeat (entry_exists), refused (any"
    " other refusal), withdrawn, won, lost.",
    ["outcome"],
    registry=registry,
)
draw_duration = Histogram(
    "slots_draw_duration_seconds",
    "Time one office-day's draw took, its transaction included.",
    registry=registry,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
draw_entries = Counter(
    "slots_draw_entries", "Entries drawn, by outcome (won, lost).", ["outcome"], registry=registry
)
waitlist = Counter(
    "slots_waitlist",
    "Waitlist (API 1.1) by outcome: waiting, booked_at_once, booked (freed seats), passed_over,"
    " cancelled, expired.",
    ["outcome"],
    registry=registry,
)
webhook_deliveries = Counter(
    "slots_webhook_deliveries",
    "Webhook deliveries by outcome: ok (2xx), error (refused, timed out, not recorded).",
    ["outcome"],
    registry=registry,
)
webhook_lag = Gauge(
    "slots_webhook_lag_seconds",
    "Seconds between the last delivered event's occurrence and its delivery; 0 when caught up.",
    registry=registry,
    multiprocess_mode="livemax",
)
db_pool_size = Gauge(
    "slots_db_pool_connections",
    "Postgres connections open in the API's pools (all live workers).",
    registry=registry,
    multiprocess_mode="livesum",
)
db_pool_idle = Gauge(
    "slots_db_pool_idle_connections",
    "Postgres connections open and idle in the API's pools (all live workers).",
    registry=registry,
    multiprocess_mode="livesum",
)
db_pool_max = Gauge(
    "slots_db_pool_max_connections",
    "The pools' ceiling (SLOTS_DB_POOL_SIZE times the live workers).",
    registry=registry,
    multiprocess_mode="livesum",
)


def multiprocess_dir() -> str:
    """The directory every worker writes its values to, or "" (values in memory)."""
    return environment().get("PROMETHEUS_MULTIPROC_DIR", "")


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: all workers' files in multiprocess mode, else this process."""
    path = multiprocess_dir()
    if not path:
        return registry
    found = CollectorRegistry()
    MultiProcessCollector(found, path=path)  # type: ignore[no-untyped-call]
    return found


def exposition() -> bytes:
    return generate_latest(scrape_registry())


class _Pool(Protocol):
    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...


def observe_pool(pool: _Pool) -> None:
    db_pool_size.set(pool.get_size())
    db_pool_idle.set(pool.get_idle_size())
    db_pool_max.set(pool.get_max_size())


# Per request, the pool's gauges are written at most this often (each write is three
# multiprocess file writes); a scrape writes them first, whatever the time.
POOL_EVERY_S = 0.5
_pool_seen = [0.0]


def observe_pool_soon(pool: _Pool) -> None:
    now = time.monotonic()
    if now - _pool_seen[0] >= POOL_EVERY_S or not _pool_seen[0]:
        _pool_seen[0] = now
        observe_pool(pool)


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


_latency_children: dict[tuple[str, str, int], _Observer] = {}


def http_latency_of(method: str, route: str, status: int) -> _Observer:
    """The latency histogram's child for a route and status, resolved once."""
    key = (method, route, status)
    found = _latency_children.get(key)
    if found is None:
        found = _latency_children[key] = http_latency.labels(method, route, str(status))
    return found


_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)
_children: dict[tuple[int, tuple[str, ...]], object] = {}


def child(metric: _Metric, *labels: str) -> _Metric:
    """`metric.labels(*labels)`, resolved once (on the hot path: a dict look-up)."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found  # type: ignore[return-value]


def webhook_delivered(occurred_at: str, now: datetime) -> None:
    """An event delivered at `now`: it waited this long since it occurred (both instants of
    the service clock, which stamped the event)."""
    try:
        lag = (now - datetime.fromisoformat(occurred_at)).total_seconds()
    except ValueError:
        return
    webhook_lag.set(max(lag, 0.0))
