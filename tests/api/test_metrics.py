"""/metrics and the request lines in one process (no multiprocess directory): the collectors
the operations guide lists, X-Request-ID on every answer."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from slots_service import metrics
from tests.conftest import booking_body


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_list_jobs_pools_and_requests(catalog: httpx.AsyncClient) -> None:
    assert metrics.multiprocess_dir() == ""  # in memory: one process
    before = _samples((await catalog.get("/metrics")).text)
    assert (await catalog.post("/v1/admin/jobs/reconcile")).status_code == 200
    created = await catalog.post("/v1/bookings", json=booking_body())
    assert created.status_code == 201
    response = await catalog.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    after = _samples(response.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("slots_job_runs_total", job="reconcile", outcome="ok") == 1
    assert grew("slots_job_duration_seconds_count", job="reconcile") == 1
    last = after[("slots_job_last_success_timestamp_seconds", (("job", "reconcile"),))]
    assert last > 1_600_000_000
    assert grew("slots_bookings_total", outcome="created") == 1
    route = {"method": "POST", "route": "/v1/bookings", "status": "201"}
    assert grew("slots_http_request_duration_seconds_count", **route) == 1
    assert after[("slots_db_pool_connections", ())] >= 1
    assert after[("slots_db_pool_max_connections", ())] == 20
    assert after[("slots_redis_up", ())] == 1
    for name in ("slots_webhook_deliveries", "slots_webhook_lag_seconds", "slots_scheduler_leader"):
        assert f"# HELP {name}" in response.text


async def test_x_request_id_is_the_callers_when_printable_else_new(
    client: httpx.AsyncClient,
) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": "abc-123 xyz"})
    assert kept.headers["x-request-id"] == "abc-123 xyz"
    for bad in ("", " lead", "a" * 129, "tab\there"):
        made = (await client.get("/healthz", headers={"X-Request-ID": bad})).headers
        assert made["x-request-id"] != bad
        assert len(made["x-request-id"]) == 32
    problem = await client.get("/v1/bookings/nope-not-an-id")
    assert len(problem.headers["x-request-id"]) == 32
