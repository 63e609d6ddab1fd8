"""Prometheus collectors, defined once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

registry = CollectorRegistry(auto_describe=True)

bookings = Counter(
    "slots_bookings",
    "Booking attempts by outcome (created, or the problem code that ended them).",
    ["outcome"],
    registry=registry,
)
gate = Counter(
    "slots_redis_gate",
    "Redis gate answers: taken, full, missing (Postgres asked), bypassed (Redis down).",
    ["result"],
    registry=registry,
)
redis_up = Gauge("slots_redis_up", "1 while Redis answers, 0 while degraded.", registry=registry)
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
scheduler_leader = Gauge(
    "slots_scheduler_leader",
    "1 while this process holds the scheduler leader lock.",
    registry=registry,
)
reconcile_corrected = Counter(
    "slots_reconcile_corrected",
    "Redis window counters that reconcile found absent or drifted and rewrote.",
    registry=registry,
)
events_published = Counter(
    "slots_events", "Events written to the outbox by type.", ["type"], registry=registry
)
