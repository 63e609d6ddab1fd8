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
    "book-sql": ("201",),
    "hot": ("201",),
    "flash": ("201", "409 slot_full"),
    "availability": ("200",),
    "book-no-redis": ("201",),
    "flash-w2": ("201", "409 slot_full"),
    "availability-w2": ("200",),
    "crowd": ("201", "409 slot_full"),
    "book-w2": ("201",),
    "hot-w2": ("201",),
}
UNITS = {
    "book": "bookings/s",
    "book-sql": "bookings/s",
    "hot": "bookings/s",
    "flash": "answers/s",
    "book-no-redis": "bookings/s",
    "flash-w2": "answers/s",
    "crowd": "answers/s",
    "book-w2": "bookings/s",
    "hot-w2": "bookings/s",
}
# Figure / baseline pairs printed as ratios: (scenario, limit key).
RATIOS = (
    ("book", "L_pg"),
    ("book-sql", "L_pg"),
    ("hot", "L_hot"),
    ("flash", "L_http_post"),
    ("availability", "L_http_get"),
    ("book-no-redis", "L_pg"),
    ("flash-w2", "L_http_post"),
    ("availability-w2", "L_http_get"),
    ("crowd", "L_http_post"),
    ("book-w2", "L_pg"),
    ("hot-w2", "L_hot"),
)
# The last line's keys (the issue's shape), by scenario.
ISSUE_KEYS = {
    "book": "book",
    "book-sql": "book_sql",
    "hot": "hot",
    "flash": "flash",
    "availability": "availability",
    "book-no-redis": "book_no_redis",
    "flash-w2": "flash_w2",
    "availability-w2": "availability_w2",
    "book-w2": "book_w2",
    "hot-w2": "hot_w2",
}


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
        """Per second: bookings (book), answers (flash), 200s (availability); a crowd's
        answers over the time from its first request to its last answer."""
        if self.name == "crowd":
            return float(self.result["answers_per_s"])
        return round(self.expected / float(self.result["seconds"]), 1)

    def cpu_us(self, tree: str = "api") -> float | None:
        """CPU time of a process tree per request answered (warm-up included), in µs."""
        seconds = (self.result.get("cpu_s_by") or {}).get(tree)
        answered = int(sum(self.result.get("statuses_all", {}).values()))
        if seconds is None or not answered:
            return None
        return round(float(seconds) / answered * 1e6, 1)

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
        if s.server.get("batches"):
            line += f"; batches {s.server['batches']}, mean {s.server['batch_mean']} bookings"
            ended = s.server.get("batch_outcomes") or {}
            if set(ended) - {"committed"}:  # a batch rolled back or failed: say so
                line += " (" + ", ".join(f"{k} {v}" for k, v in ended.items()) + ")"
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
        "summary (figure = bookings/s for book/hot, answers/s for flash/crowd, 200s/s else;"
        " CPU = the API's, and Postgres's, per request answered)",
        f"{'scenario':<16}{'figure/s':>10}{'ceiling':>20}{'ratio':>8}{'API CPU':>10}"
        f"{'PG CPU':>9}{'p50 ms':>8}{'p99 ms':>8}{'unexpected':>11}",
    ]
    for name, s in results.items():
        lat = s.result["latency_ms"]
        for i, key in enumerate(_ratio_keys(name) or ["-"]):
            base = limits.get(key) if limits else None
            ceiling = f"{key} {base}" if base else key
            first = i == 0
            lines.append(
                f"{name if first else '':<16}{s.figure if first else '':>10}{ceiling:>20}"
                f"{format_ratio(s.figure, base):>8}{_us(s.cpu_us()) if first else '':>10}"
                f"{_us(s.cpu_us('postgres')) if first else '':>9}"
                f"{_ms(lat['p50']) if first else '':>8}{_ms(lat['p99']) if first else '':>8}"
                f"{sum(s.unexpected.values()) if first else '':>11}"
            )
    if crowd := results.get("crowd"):
        c = crowd.result["crowd"]
        lines.append(
            f"crowd: sold {c['sold']} of {c['capacity']}, oversold {c['oversold']}, "
            f"sold out {_ms(c['sellout_ms'])} ms after the first answer, "
            f"{c['conn_errors']} connection errors"
        )
    return "\n".join(lines)


def issue_json(results: Mapping[str, Scenario], limits: Limits | None) -> str:
    """The last line: every figure per second as an integer, in the shape issue 9 asks for
    (a scenario not run is null)."""

    def whole(value: float | None) -> int | None:
        return None if value is None else round(value)

    found: dict[str, Any] = {
        key: whole(results[name].figure) if name in results else None
        for name, key in ISSUE_KEYS.items()
        if key not in ("book_sql", "flash_w2", "availability_w2", "book_w2", "hot_w2")
    }
    crowd = results.get("crowd")
    found["crowd"] = (
        {
            key: whole(crowd.result["crowd"][key])
            for key in (
                "answers_per_s",
                "sold",
                "oversold",
                "sellout_ms",
                "p50_ms",
                "p99_ms",
                "conn_errors",
            )
        }
        if crowd
        else None
    )
    found["limits"] = dict(limits or {})
    for name in ("flash-w2", "availability-w2"):
        found[ISSUE_KEYS[name]] = whole(results[name].figure) if name in results else None
    for name in ("book-sql", "book-w2", "hot-w2"):  # only when run
        if name in results:
            found[ISSUE_KEYS[name]] = whole(results[name].figure)
    return json.dumps(found, separators=(", ", ": "))


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
                "cpu_us_per_request": {
                    tree: s.cpu_us(tree) for tree in (s.result.get("cpu_s_by") or {})
                },
                "crowd": s.result.get("crowd"),
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


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} µs"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
