"""The Grafana dashboard and the alert rules as code: every PromQL expression parses, names only
metrics (and labels) that the service's real /metrics exposes, and the rules pass promtool's
checks and unit tests."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from slots_service import metrics
from slots_service.config import Settings
from slots_service.jobs import JOBS
from tests.conftest import booking_body, person
from tests.integration.helpers import WebhookReceiver, webhook_sender

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
OPERATOR_RULES = DEPLOY / "prometheus-rules.yaml"
RULES = DEPLOY / "slots-service.rules.yaml"
RULE_TESTS = DEPLOY / "prometheus-rules.test.yaml"

# Series that come from elsewhere than /metrics of the service, by their exporter.
EXTERNAL = {
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_status_replicas_unavailable": "kube-state-metrics",
}
# Labels the scrape attaches (Prometheus Operator PodMonitor or the pod annotations); a label
# of the exposition with one of these names is stored as exported_<name> (honor_labels: false).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "service"}
# Grafana's interval variables, replaced by a duration before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is missing: install Debian's `prometheus` package "
            "(apt-get install prometheus; .ci/run does)"
        )
    return found


# ------------------------------------------------------------------ the expressions


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def dashboard_exprs() -> list[tuple[str, str]]:
    found = []
    for panel in _panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"dashboard: {panel['title']} ({target['refId']})", expr))
    return found


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_exprs() -> list[tuple[str, str]]:
    return [(f"rule: {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]


EXPRESSIONS = dashboard_exprs() + rule_exprs()


# ------------------------------------------------------------------ the real exposition


async def _deliver_webhooks_once(settings: Settings) -> None:
    """The scheduler's webhook sender, until it has delivered an event to a local receiver."""
    sample = ("slots_webhook_deliveries_total", {"outcome": "ok"})
    before = metrics.registry.get_sample_value(*sample) or 0
    async with webhook_sender(settings, WebhookReceiver()):
        for _ in range(100):
            if (metrics.registry.get_sample_value(*sample) or 0) > before:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("no webhook delivered in 5 s")


@pytest.fixture
async def exposition(catalog: httpx.AsyncClient, settings: Settings) -> dict[str, set[str]]:
    """Sample name -> label names, from GET /metrics of the real app after some traffic: a
    booking made, one refused by a rule, every job run once, its event sent as a webhook."""
    who = person()
    assert (await catalog.post("/v1/bookings", json=booking_body(who))).status_code == 201
    refused = await catalog.post("/v1/bookings", json=booking_body(who, start="14:00"))
    assert refused.status_code >= 400, refused.text
    for job in JOBS:
        response = await catalog.post(f"/v1/admin/jobs/{job}")
        assert response.status_code == 200, response.text
    await _deliver_webhooks_once(settings)
    response = await catalog.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def _stored_labels(labels: set[str]) -> set[str]:
    """Label names as Prometheus stores them after the scrape."""
    return {f"exported_{name}" if name in TARGET_LABELS else name for name in labels}


def _selectors(node: Any) -> list[Any]:
    found: list[Any] = []

    def visit(n: Any) -> None:
        if isinstance(n, promql_parser.VectorSelector):
            found.append(n)

    promql_parser.walk(node, pre_visit=visit)
    return found


def problems_of(expr: str, samples: dict[str, set[str]]) -> list[str]:
    """What in one expression names a series or label that would not exist."""
    problems: list[str] = []
    ast = promql_parser.parse(expr)

    def labels_of(selector: Any) -> set[str] | None:
        if selector.name in EXTERNAL:
            return None  # not ours: its labels are the exporter's business
        return _stored_labels(samples[selector.name]) | TARGET_LABELS

    for selector in _selectors(ast):
        name = selector.name
        if not name:
            problems.append(f"{selector}: select by metric name")
            continue
        if name not in samples and name not in EXTERNAL:
            problems.append(f"{name}: no such sample in /metrics")
            continue
        known = labels_of(selector)
        if known is None:
            continue
        for matcher in selector.matchers.matchers:
            if matcher.name not in known:
                problems.append(f"{name}: no label {matcher.name!r} (has {sorted(known)})")

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            below = [s for s in _selectors(node.expr) if s.name in samples]
            if not below:
                return
            known = set().union(*(labels_of(s) or set() for s in below))
            for label in node.modifier.labels:
                if label not in known:
                    problems.append(f"{node}: groups by {label!r}, which none of its series has")

    promql_parser.walk(ast, pre_visit=visit)
    return problems


# ------------------------------------------------------------------ tests


def test_every_expression_parses() -> None:
    assert len(EXPRESSIONS) >= 20
    failures = []
    for where, expr in EXPRESSIONS:
        try:
            promql_parser.parse(expr)
        except ValueError as exc:
            failures.append(f"{where}: {exc}\n    {expr}")
    assert not failures, "\n".join(failures)


async def test_every_metric_and_label_exists_in_the_real_metrics(
    exposition: dict[str, set[str]],
) -> None:
    failures = []
    for where, expr in EXPRESSIONS:
        failures += [f"{where}: {problem}" for problem in problems_of(expr, exposition)]
    assert not failures, "\n".join(failures)


async def test_the_check_finds_a_wrong_name_and_a_wrong_label(
    exposition: dict[str, set[str]],
) -> None:
    assert problems_of("rate(slots_bookings_total[5m])", exposition) == []
    assert problems_of("rate(slots_booking_total[5m])", exposition) != []
    assert problems_of('slots_bookings_total{result="x"}', exposition) != []
    # The metric's own `job` label is stored as exported_job.
    assert problems_of("sum by (job) (slots_job_runs_total)", exposition) == []  # the scrape's
    assert problems_of("sum by (exported_job) (slots_job_runs_total)", exposition) == []
    assert problems_of("sum by (name) (slots_job_runs_total)", exposition) != []


def test_the_dashboard_covers_the_production_questions() -> None:
    found = dashboard()
    assert found["uid"] == "slots-service"
    panels = [p for p in _panels(found["panels"]) if p["type"] != "row"]
    assert len({p["id"] for p in _panels(found["panels"])}) == len(list(_panels(found["panels"])))
    text = json.dumps(panels)
    for metric in (
        "slots_bookings_total",
        "slots_http_request_duration_seconds_bucket",
        "slots_redis_gate_total",
        "slots_reconcile_corrected_total",
        "slots_redis_up",
        "slots_job_runs_total",
        "slots_scheduler_leader",
    ):
        assert metric in text, metric
    assert "histogram_quantile(0.5," in text
    assert "histogram_quantile(0.99," in text
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel.get("description"), panel["title"]


def test_the_operator_rule_and_the_plain_rule_file_hold_the_same_groups() -> None:
    operator = yaml.safe_load(OPERATOR_RULES.read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"] == yaml.safe_load(RULES.read_text()), (
        f"{OPERATOR_RULES.name} spec and {RULES.name} differ: edit both"
    )


def test_promtool_check_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_test_rules() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts - fired == set(), "alerts without a promtool test that fires them"
