"""The machine's ceilings that `slots-service bench` compares its figures with: the "L" figures
of ../shared/limits/run.sh, read from a JSON file or measured by running run.sh (`--limits`)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO

LIMIT_KEYS = ("L_redis_lua", "L_redis_lua_p16", "L_pg", "L_hot", "L_http_get", "L_http_post")
Limits = dict[str, int | None]
# <repo>/slots_service/bench/limits.py -> <repo>/../shared/limits/run.sh
RUN_SH = Path(__file__).resolve().parents[3] / "shared/limits/run.sh"


def parse_limits(text: str) -> Limits:
    """The L figures from run.sh's stdout (its last non-empty line) or from a JSON file.

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
    choice: str, log_path: Path, progress: Callable[[str], None]
) -> tuple[Limits | None, str]:
    """`--limits none | auto | FILE`: the ceilings (None: no ratios), and a line on where they
    came from. `auto` runs run.sh, its stderr logged to `log_path`."""
    if choice == "none":
        return None, "none (--limits none): no ratios"
    if choice != "auto":
        path = Path(choice)
        try:
            return parse_limits(path.read_text()), f"from {path}"
        except (OSError, ValueError) as exc:
            return None, f"could not read {path}: {exc}; no ratios"
    if not RUN_SH.exists():
        return None, f"{RUN_SH} not found; no ratios"
    return _measure(log_path, progress)


def _measure(log_path: Path, progress: Callable[[str], None]) -> tuple[Limits | None, str]:
    progress(f"measuring the machine's ceilings: {RUN_SH} (log {log_path}), ~90 s")
    started = time.monotonic()
    tool = None
    with log_path.open("w") as log_file:
        # Our process group: Ctrl-C reaches run.sh too, whose trap stops its servers.
        proc = subprocess.Popen(  # noqa: S603 (our sibling script, fixed arguments)
            [str(RUN_SH), "--only", "redis,pg,hot,http"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            assert proc.stdout is not None
            for line in proc.stderr:
                log_file.write(line)
                if line.startswith("[limits"):
                    progress(line.rstrip())
                elif line.startswith("details: "):
                    with suppress(ValueError, AttributeError):
                        tool = json.loads(line[9:]).get("http", {}).get("tool")
            out = proc.stdout.read()
            proc.wait()
        except BaseException as exc:
            _stop(proc, log_file, interrupted=isinstance(exc, KeyboardInterrupt))
            raise
    took = time.monotonic() - started
    try:
        limits = parse_limits(out)
    except ValueError as exc:
        return None, f"run.sh failed (exit {proc.returncode}): {exc}; see {log_path}"
    shown = " ".join(f"{k}={limits[k]}" for k in LIMIT_KEYS)
    how = f"run.sh, {took:.0f} s, exit {proc.returncode}, HTTP load by {tool or '?'}"
    return limits, f"{shown} ({how})"


def _stop(proc: subprocess.Popen[str], log: IO[str], interrupted: bool) -> None:
    """run.sh shares our Ctrl-C, and stops its servers on it: keep its log flowing (a closed
    pipe would kill its clean-up) until it exits. On any other error, ask it to stop first.
    Then, if it is still there, SIGTERM, then SIGKILL."""
    if not interrupted:
        with suppress(ProcessLookupError):
            proc.terminate()
    with suppress(KeyboardInterrupt, subprocess.TimeoutExpired, OSError, ValueError):
        if proc.stderr is not None:
            for line in proc.stderr:
                log.write(line)
        proc.wait(30)
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with suppress(ProcessLookupError):
                proc.send_signal(sig)
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue
