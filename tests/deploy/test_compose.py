"""deploy/compose.yaml without a Docker engine: every service, port and file it names exists and
fits together (what Prometheus scrapes, what Grafana provisions, what the image reads)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from slots_service.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SERVICES = {"postgres", "valkey", "seed", "api", "scheduler", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return found


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts: container path -> file or folder on the host."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (DEPLOY / source).resolve()
    return found


def container_ports(service: dict[str, Any]) -> set[int]:
    published = {int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports", [])}
    return published | {int(p) for p in service.get("expose", [])}


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == SERVICES
    for name, service in services(compose).items():
        assert service.get("image") or service.get("build"), name
        for needed in service.get("depends_on", []):
            assert needed in SERVICES, f"{name} depends on unknown {needed}"


def test_the_image_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    built = [s for s in services(compose).values() if "build" in s]
    assert len(built) == 1
    context = (DEPLOY / built[0]["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / built[0]["build"]["dockerfile"]).is_file()
    image = built[0]["image"]
    for name in ("api", "scheduler", "seed"):
        assert services(compose)[name]["image"] == image, name
    commands = {name: services(compose)[name]["command"] for name in ("api", "scheduler", "seed")}
    assert commands == {"api": ["serve"], "scheduler": ["scheduler"], "seed": ["seed"]}


def test_every_file_it_mounts_exists(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} not declared"


def test_the_service_settings_load_and_name_the_stack(compose: dict[str, Any]) -> None:
    found = services(compose)
    postgres = found["postgres"]["environment"]
    for name in ("api", "scheduler", "seed"):
        env = {k: str(v) for k, v in found[name]["environment"].items()}
        settings = load_settings(env)  # the service's own parser: refuses what serve refuses
        assert not settings.test_clock, name
        assert not settings.scheduler_in_process, name
        db = urlsplit(settings.database_url)
        assert (db.hostname, db.port, db.path) == ("postgres", 5432, "/" + postgres["POSTGRES_DB"])
        assert (db.username, db.password) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
        )
        assert urlsplit(settings.redis_url).hostname == "valkey"
    api = load_settings({k: str(v) for k, v in found["api"]["environment"].items()})
    assert container_ports(found["api"]) == {api.port}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {api.port}$", dockerfile, re.MULTILINE)
    scheduler = load_settings({k: str(v) for k, v in found["scheduler"]["environment"].items()})
    assert container_ports(found["scheduler"]) == {scheduler.metrics_port}
    assert found["scheduler"]["healthcheck"] == {"disable": True}  # the image's probes HTTP
    command = found["valkey"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def _prometheus_config(compose: dict[str, Any]) -> tuple[PurePosixPath, dict[str, Any]]:
    prometheus = services(compose)["prometheus"]
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    path = PurePosixPath(flag.split("=", 1)[1])
    host = mounts(prometheus)[str(path)]
    return path, yaml.safe_load(host.read_text())


def test_prometheus_scrapes_the_api_and_the_scheduler(compose: dict[str, Any]) -> None:
    _, config = _prometheus_config(compose)
    found = services(compose)
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert {t.split(":")[0] for t in targets} == {"api", "scheduler"}
    for target in targets:
        host, port = target.split(":")
        assert int(port) in container_ports(found[host]), target
    assert 9090 in container_ports(found["prometheus"])


def test_prometheus_loads_the_rules_it_mounts(compose: dict[str, Any]) -> None:
    path, config = _prometheus_config(compose)
    mounted = mounts(services(compose)["prometheus"])
    assert config["rule_files"], "no rule files"
    for rule_file in config["rule_files"]:
        in_container = path.parent / rule_file
        assert str(in_container) in mounted, f"{in_container} is not mounted"
        assert mounted[str(in_container)] == DEPLOY / "slots-service.rules.yaml"


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run installs it)")
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisions_the_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    mounted = mounts(grafana)
    provisioning = PurePosixPath("/etc/grafana/provisioning")
    datasources = [
        yaml.safe_load(host.read_text())
        for target, host in mounted.items()
        if PurePosixPath(target).parent == provisioning / "datasources"
    ]
    providers = [
        yaml.safe_load(host.read_text())
        for target, host in mounted.items()
        if PurePosixPath(target).parent == provisioning / "dashboards"
    ]
    assert len(datasources) == 1
    assert len(providers) == 1
    (source,) = datasources[0]["datasources"]
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus"
    assert url.hostname == "prometheus"
    assert url.port in container_ports(services(compose)["prometheus"])
    (provider,) = providers[0]["providers"]
    folder = PurePosixPath(provider["options"]["path"])
    dashboards = {t: h for t, h in mounted.items() if PurePosixPath(t).parent == folder}
    assert list(dashboards.values()) == [DEPLOY / "grafana-dashboard.json"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards
    assert 3000 in container_ports(grafana)


def test_the_readme_describes_the_local_stack() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "docker compose -f deploy/compose.yaml up" in readme
    for port in ("8000", "9090", "3000"):
        assert port in readme
