"""The house drawn from its imports: rules know no HTTP, storage knows no rules, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "slots_service"
WEB = {"app", "routes", "fast_booking", "bodies", "problems", "auth", "openapi"}
RULES = {
    "booking",
    "leaving",
    "entries",
    "draw",
    "waitlist",
    "seats",
    "events",
    "people",
    "party",
    "horizon",
    "closures",
    "availability",
    "jobs",
    "idempotency",
    "webhooks",
}
STORAGE = {"db", "counters"}


def imports_of(module: str) -> set[str]:
    """The slots_service modules (and third-party roots) a module imports at run time."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module:
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "__main__"})


@pytest.mark.parametrize("module", sorted(RULES))
def test_rules_import_nothing_of_the_web_layer(module: str) -> None:
    found = imports_of(module)
    assert not found & WEB, f"{module} imports {sorted(found & WEB)}"
    assert "litestar" not in found, f"{module} imports litestar"


@pytest.mark.parametrize("module", sorted(STORAGE))
def test_storage_imports_no_rules(module: str) -> None:
    found = imports_of(module)
    assert not found & (RULES | WEB), f"{module} imports {sorted(found & (RULES | WEB))}"


def test_no_module_imports_in_a_cycle() -> None:
    own = set(modules())
    graph = {m: imports_of(m) & own for m in own}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for other in sorted(graph[module]):
            visit(other, [*path, module])
        done.add(module)

    for module in sorted(own):
        visit(module, [])
