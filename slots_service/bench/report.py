"""What `slots-service bench` reports: each scenario's figure, latency and unexpected answers
beside the machine's ceilings and what the servers did, then a summary table and one JSON line
with every figure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .limits import Limits
from .stats import LogScan

# The statuses that count towards a scenario's figure; anything else is "unexpected".
EXPECTED: dict[str, tuple[str, ...]] = {
    "book": ("201",),
    "flash": ("201", "409 slot_full"),
    "availability": ("200",),
    "book-no-redis": ("201",),
}
UNITS = {"book": "bookings/s", "flash": "answers/s", "book-no-redis": "bookings/s"}
# Figure / baseline pairs printed as ratios: (scenario, limit key).
RATIOS = (
    ("book", "L_pg"),
    ("book", "L_hot"),
    ("flash", "L_http_post"),
    ("availability", "L_http_get"),
    ("book-no-redis", "L_pg"),
)


@dataclass
class Scenario:
    """One measured scenario: the load generator's result, what the API counted (`server`)
    and logged (`log`), and a note from the checks."""

    name: str
    result: dict[str, Any]
    server: dict[str, Any]
    log: LogScan
    note: str = ""

    @property
    def expected(self) -> int:
        return sum(self.result["statuses"].get(s, 0) for s in EXPECTED[self.name])

    @property
    def figure(self) -> float:
        """Per second: bookings (book), answers (flash), 200s (availability)."""
        return round(self.expected / float(self.result["seconds"]), 1)

    @property
    def unexpected(self) -> dict[str, int]:
        ok = EXPECTED[self.name]
        return {k: v for k, v in self.result["statuses"].items() if k not in ok}


def ratio(value: float | None, base: int | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def format_ratio(value: float | None, base: int | None) -> str:
    """`0.123` (three significant decimals below 1), `n/a` without a baseline."""
    found = ratio(value, base)
    if found is None:
        return "n/a"
    return f"{found:.3f}" if found < 10 else f"{found:.1f}"


def scenario_lines(s: Scenario, limits: Limits | None) -> str:
    """The figure and latency on one line, then what else was seen, indented."""
    lat = s.result["latency_ms"]
    line = (
        f"{s.name:<14} {s.figure:9.1f} {UNITS.get(s.name, 'req/s'):<10} "
        f"p50 {_ms(lat['p50'])} p95 {_ms(lat['p95'])} p99 {_ms(lat['p99'])} "
        f"max {_ms(lat['max'])} ms"
    )
    unexpected = s.unexpected
    line += "; unexpected: " + (
        ", ".join(f"{k} x{v}" for k, v in unexpected.items()) if unexpected else "none"
    )
    if s.name == "flash":
        line += f" (201 x{s.result['statuses'].get('201', 0)} in the measured part)"
    if limits:
        line += "; " + ", ".join(
            f"/{key} = {format_ratio(s.figure, limits.get(key))}" for key in _ratio_keys(s.name)
        )
    if s.log.errors:
        line += f"; server logged {s.log.errors} errors"
    for message, count in list(s.log.warnings.items())[:5]:
        line += f"\n  server log: {message} (x{count})"
    if s.note:
        line += f"\n  {s.note}"
    if s.server.get("handled"):
        line += f"\n  in the API: mean {_ms(s.server['mean_ms'])} ms per request"
        for what in ("gate", "outcomes"):
            if s.server.get(what):
                counts = ", ".join(f"{k} {v}" for k, v in s.server[what].items())
                line += f"; {what}: {counts}"
    cpu = s.result.get("cpu_cores") or {}
    if cpu:
        line += "\n  cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
    if s.log.first_error:
        line += f"\n  server log ({s.log.errors} error lines), first:"
        line += "".join("\n    " + error for error in s.log.first_error)
    return line


def summary_table(results: Mapping[str, Scenario], limits: Limits | None) -> str:
    """A blank line, a heading, then one row per scenario."""
    lines = [
        "",
        "summary (figure = bookings/s for book, answers/s for flash, 200s/s else)",
        f"{'scenario':<14}{'figure/s':>10}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'unexpected':>12}  ratio",
    ]
    for name, s in results.items():
        lat = s.result["latency_ms"]
        shown = (
            ", ".join(
                f"/{key} {format_ratio(s.figure, limits.get(key))}" for key in _ratio_keys(name)
            )
            if limits
            else "-"
        )
        lines.append(
            f"{name:<14}{s.figure:>10.1f}{s.result['rps']:>10.1f}{_ms(lat['p50']):>9}"
            f"{_ms(lat['p95']):>9}{_ms(lat['p99']):>9}{sum(s.unexpected.values()):>12}  {shown}"
        )
    return "\n".join(lines)


def summary_json(
    results: Mapping[str, Scenario],
    limits: Limits | None,
    checks: dict[str, Any],
    bench: dict[str, Any],
) -> str:
    """Every figure as one line of JSON; `bench` says how the run was made."""
    lim = limits or {}
    ratios = {
        f"{scenario}/{key}": _round(ratio(results[scenario].figure, lim.get(key)))
        for scenario, key in RATIOS
        if scenario in results
    }
    summary = {
        "bench": bench,
        "limits": limits,
        "scenarios": {
            name: {
                "figure_per_s": s.figure,
                "rps": s.result["rps"],
                "requests": s.result["requests"],
                "latency_ms": s.result["latency_ms"],
                "statuses": s.result["statuses"],
                "unexpected": s.unexpected,
                "created_all": s.result["created_all"],
                "conn_errors": s.result["conn_errors"],
                "server_error_lines": s.log.errors,
                "server_warnings": s.log.warnings,
                "cpu_cores": s.result.get("cpu_cores"),
                "server": s.server,
            }
            for name, s in results.items()
        },
        "ratios": ratios,
        "checks": checks,
    }
    return json.dumps(summary, separators=(",", ":"))


def _ratio_keys(name: str) -> list[str]:
    return [key for scenario, key in RATIOS if scenario == name]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
