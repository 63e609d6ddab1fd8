"""The machine's ceilings that `slots-service bench` compares its figures with, the "L"
figures (`--limits`): measured in this run by ceilings/ (`auto`), read from a JSON file, or none.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .ceilings import Durations, measure
from .ceilings.common import Progress

LIMIT_KEYS = ("L_redis_lua", "L_redis_lua_p16", "L_pg", "L_hot", "L_http_get", "L_http_post")
Limits = dict[str, int | None]


def parse_limits(text: str) -> Limits:
    """The L figures from a JSON file: an object of them (`{"L_pg": 8123, ...}`) on its last
    non-empty line, or the whole file pretty-printed.

    Every key of LIMIT_KEYS is present in the result: an integer per second or None (not
    measured, missing, or not a positive number)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output to read the limits from")
    try:
        found = json.loads(lines[-1])
    except ValueError:
        try:  # a pretty-printed file
            found = json.loads(text)
        except ValueError:
            raise ValueError(f"not a JSON object: {lines[-1][:200]!r}") from None
    if not isinstance(found, dict):
        raise ValueError(f"not a JSON object: {lines[-1][:200]!r}")
    if not any(key in found for key in LIMIT_KEYS):
        raise ValueError(f"none of {', '.join(LIMIT_KEYS)} in {lines[-1][:200]!r}")
    limits: Limits = {}
    for key in LIMIT_KEYS:
        value = found.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            limits[key] = int(value)
        else:
            limits[key] = None
    return limits


def read_limits(
    choice: str, root: Path, durations: Durations, progress: Progress
) -> tuple[Limits | None, str]:
    """`--limits none | auto | FILE`: the ceilings (None: no ratios), and what to print on where
    they came from. `auto` measures them with Valkey and Postgres under `root`, the tools'
    output in root/limits.log."""
    if choice == "none":
        return None, "none (--limits none): no ratios"
    if choice != "auto":
        path = Path(choice)
        try:
            return parse_limits(path.read_text()), f"from {path}"
        except (OSError, ValueError) as exc:
            return None, f"could not read {path}: {exc}; no ratios"
    return _measure(root, durations, progress)


def _measure(root: Path, durations: Durations, progress: Progress) -> tuple[Limits, str]:
    log = root / "limits.log"
    progress(f"measuring the machine's ceilings, ~{durations.total_s + 10:.0f} s (log {log})")
    started = time.monotonic()
    found = measure(root, durations, log, progress)
    limits: Limits = dict.fromkeys(LIMIT_KEYS)
    limits.update((c.key, c.value) for c in found)
    took = time.monotonic() - started
    lines = [f"measured here, each alone, in {took:.0f} s (--limits auto):"]
    lines += [f"  {c.line()}" for c in found]
    return limits, "\n".join(lines)
