"""What `slots-service bench` observes on the server side of a scenario: the API's own counters
(from /metrics), errors and warnings in its log, and the cores each process tree kept busy
(Linux /proc)."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- the API's /metrics

_METRICS = (
    "slots_redis_gate_total{",
    "slots_bookings_total{",
    "slots_http_request_duration_",
    "slots_book_batch_size_",
    "slots_book_batches_total{",
)


def parse_metrics(text: str) -> dict[str, float]:
    """The samples of the gate, booking-outcome, HTTP-latency and group-commit batch series,
    by `name{labels}` (histogram buckets left out)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(_METRICS) and "_bucket{" not in line:
            key, _, value = line.rpartition(" ")
            with suppress(ValueError):
                found[key] = float(value)
    return found


def server_side(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    """What the API itself counted between two scrapes: gate answers, booking outcomes, and
    its own mean handling time (ms) of the requests (not /metrics, /readyz), and the group
    commit's batches: how many, and their mean size in bookings."""

    def deltas(prefix: str) -> dict[str, int]:
        out = {}
        for key, value in after.items():
            if key.startswith(prefix):
                label = key.split('"')[1]
                if change := int(value - before.get(key, 0.0)):
                    out[label] = change
        return out

    total = count = 0.0
    for key, value in after.items():
        if "/metrics" in key or "/readyz" in key:
            continue
        if key.startswith("slots_http_request_duration_seconds_sum"):
            total += value - before.get(key, 0.0)
        elif key.startswith("slots_http_request_duration_seconds_count"):
            count += value - before.get(key, 0.0)
    batches = after.get("slots_book_batch_size_count", 0.0) - before.get(
        "slots_book_batch_size_count", 0.0
    )
    batched = after.get("slots_book_batch_size_sum", 0.0) - before.get(
        "slots_book_batch_size_sum", 0.0
    )
    return {
        "batches": int(batches),
        "batch_mean": round(batched / batches, 1) if batches else None,
        # committed, rolled_back (then decided alone), failed
        "batch_outcomes": deltas("slots_book_batches_total{"),
        "gate": deltas("slots_redis_gate_total{"),
        "outcomes": deltas("slots_bookings_total{"),
        "handled": int(count),
        "mean_ms": round(total / count * 1000, 2) if count else None,
    }


# ---------------------------------------------------------------- the API's log

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@dataclass
class LogScan:
    errors: int  # error lines, and tracebacks that no error line introduced
    warnings: dict[str, int]  # warning message (without its time) -> times logged
    first_error: list[str]  # the first error with what follows it (at most 25 lines)


def scan_log(text: str) -> LogScan:
    """Errors and warnings in the API's log: our logging format (`<time> LEVEL name msg`)
    and granian's (`[LEVEL] msg`)."""
    lines = text.splitlines()
    levels = [_TIMESTAMP.sub("", line).split(" ", 1)[0].strip("[]") for line in lines]
    marks = {i for i, level in enumerate(levels) if level in ("ERROR", "CRITICAL")}
    # A traceback right after an error line belongs to it; others count on their own.
    marks |= {i for i, line in enumerate(lines) if line.startswith("Traceback")} - {
        i + 1 for i in marks
    }
    warnings = Counter(
        _TIMESTAMP.sub("", line)
        for line, level in zip(lines, levels, strict=True)
        if level == "WARNING"
    )
    first = lines[min(marks) : min(marks) + 25] if marks else []
    return LogScan(len(marks), dict(warnings.most_common()), first)


# ---------------------------------------------------------------- CPU (Linux /proc)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and all its descendants, by pid, each with
    what its children that ended had used (a Postgres backend that came and went inside a
    measurement is counted in the postmaster's)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        with suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            out[current] = sum(int(v) for v in fields[11:15]) / tick
            todo += _children(current)
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    with suppress(OSError, ValueError, IndexError):
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        total = sum(values[:8])  # user nice system idle iowait irq softirq steal
        return (total - values[3] - values[4]) / tick, total / tick
    return 0.0, 0.0


class CpuMeter:
    """Cores kept busy, from creation to stop(), by each named process tree, the load
    generator (which reports its own CPU time), and the rest of the machine."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self.roots = dict(roots)
        self.started = time.monotonic()
        self.before = {name: _tree_cpu(pid) for name, pid in self.roots.items()}
        self.seconds: dict[str, float] = {}
        self.machine = _machine_busy()

    def stop(self, loadgen_cpu_s: float) -> dict[str, float]:
        """Cores busy by name; the CPU seconds themselves are left in `seconds`."""
        wall = max(time.monotonic() - self.started, 1e-9)
        cores: dict[str, float] = {}
        for name, pid in self.roots.items():
            before = self.before[name]
            now = _tree_cpu(pid)
            # a process gone since is in its parent's (the tree's) total now
            self.seconds[name] = sum(now.values()) - sum(before.values())
            cores[name] = self.seconds[name] / wall
        cores["loadgen"] = loadgen_cpu_s / wall
        ours = sum(cores.values())
        busy, total = _machine_busy()
        if total > self.machine[1]:
            share = (busy - self.machine[0]) / (total - self.machine[1])
            cores["machine"] = share * (os.cpu_count() or 1)
            cores["other"] = max(0.0, cores["machine"] - ours)
        return {k: round(v, 2) for k, v in cores.items()}
