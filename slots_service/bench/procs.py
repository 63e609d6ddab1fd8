"""The children of `slots-service bench`: the load generator, and how any child is stopped."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any


def stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float = 20) -> None:
    """Stop a child started with process_group=0, then anything left in its group."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            proc.send_signal(sig)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(5)


# Where this package was imported from. Every child (`python -m slots_service ...`) runs there:
# `-m` puts the working directory first on sys.path, so a child started from another checkout
# would measure that checkout's code, whatever PYTHONPATH says.
CODE_ROOT = Path(__file__).resolve().parents[2]


# What a child runs: the load generator (loadgen.py), or Postgres's side alone (statement.py).
_CHILDREN = {
    module: f"import sys; from slots_service.bench.{module} import main; sys.exit(main())"
    for module in ("loadgen", "statement")
}


def run_child(module: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run `module` ("loadgen" or "statement") in its own process on `spec`; its result."""
    proc = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
        # Not `-m slots_service.bench.loadgen`: the package imports the module first, and
        # runpy warns that it then runs a second copy of it.
        [sys.executable, "-c", _CHILDREN[module]],
        cwd=CODE_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        process_group=0,  # Ctrl-C is ours to handle: it is stopped below, in order
    )
    try:
        timeout = float(spec["warmup"]) + float(spec["seconds"]) + 90
        out, _ = proc.communicate(json.dumps(spec).encode(), timeout=timeout)
    finally:
        stop_group(proc, signal.SIGTERM)
    if proc.returncode != 0:
        raise RuntimeError(f"the {module} child failed (exit {proc.returncode})")
    found: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return found


Drive = Callable[[Mapping[str, Any]], Coroutine[Any, Any, dict[str, Any]]]


def child_main(drive: Drive) -> int:
    """A child's main: its spec as JSON on stdin, `drive` run on it (under uvloop when it is
    there), the result printed as one JSON line."""
    spec = json.loads(sys.stdin.read())
    raise_open_files(int(spec["concurrency"]) + 256)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(drive(spec))
    else:
        result = uvloop.run(drive(spec))
    print(json.dumps(result), flush=True)
    return 0


def raise_open_files(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (as far as the hard limit
    allows); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
