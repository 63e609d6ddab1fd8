"""/metrics and the request lines in one process (no multiprocess directory): the collectors
the operations guide lists, X-Request-ID on every answer."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from slots_service import metrics
from slots_service.logs import access, json_formatter
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


async def test_each_booking_request_is_counted_and_logged_once(
    catalog: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """POST /v1/bookings enters before Litestar's router: what the fast path answers, and what
    it hands on to the route (a body it does not read, a path Litestar routes there), are each
    one request in the histogram and one request line, with the answer's X-Request-ID."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(access, "propagate", True)
    before = _samples((await catalog.get("/metrics")).text)
    sent = [
        ("/v1/bookings", booking_body(), 201),  # answered by the fast path
        ("/v1/bookings", {"office_id": 1}, 400),  # handed on: the route words it
        ("/v1/bookings/", booking_body(), 201),  # routed by Litestar, then the fast path
    ]
    ids = []
    for path, body, status in sent:
        answer = await catalog.post(path, json=body)
        assert answer.status_code == status, answer.text
        ids.append(answer.headers["x-request-id"])
    after = _samples((await catalog.get("/metrics")).text)
    for code, times in (("201", 2), ("400", 1)):
        key = (
            "slots_http_request_duration_seconds_count",
            (("method", "POST"), ("route", "/v1/bookings"), ("status", code)),
        )
        assert after[key] - before.get(key, 0.0) == times, code
    as_json = json_formatter()
    lines = [json.loads(as_json.format(r)) for r in caplog.records if r.name == access.name]
    logged = [line["request_id"] for line in lines if line["route"] == "/v1/bookings"]
    assert sorted(logged) == sorted(ids)
