"""`slots-service serve` as a real process for the end-to-end tests: started in its own process
group against the test's Postgres and Valkey, ready once `/readyz` answers 200."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from slots_service.devservers import free_port
from tests.conftest import ADMIN_KEY, API_KEYS, NOW, OFFICE, OFFICE_ID, SERVICE, SERVICE_ID


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.proc, self.base, self.log = proc, base, log

    def errors(self) -> str:
        """What the server logged at ERROR level (unexpected faults)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(line for line in text.splitlines() if " ERROR " in line)

    async def request_lines(self, *request_ids: str, within: float = 10) -> list[dict[str, Any]]:
        """The request lines logged so far, once there is one for each of `request_ids`: a
        worker writes the lines of one turn of its event loop after the turn, so a request's
        line may follow its answer by a moment."""
        deadline = time.monotonic() + within
        while True:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            whole = text[: text.rfind("\n") + 1]  # a line being written is not read yet
            lines = [json.loads(x) for x in whole.splitlines() if '"route"' in x]
            found = {line.get("request_id") for line in lines}
            if set(request_ids) <= found or time.monotonic() > deadline:
                return lines
            await asyncio.sleep(0.05)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL the group if it does not end in time; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group (granian and its workers)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def environment(database_url: str, redis_url: str, **env: str) -> dict[str, str]:
    """A deployment's settings for a process of the test: these servers, the test's keys, the
    test clock on."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SLOTS_API_KEYS": API_KEYS,
        "SLOTS_PII_KEY": "e2e-pii-key-0123456789abcdef",
        "SLOTS_TEST_CLOCK": "1",
        "SLOTS_LOG_LEVEL": "warning",
        **env,
    }


def serve(database_url: str, redis_url: str, log: Path, **env: str) -> Served:
    port = free_port()
    # SLOTS_DRAIN_SECONDS 0: a test that drains says so. The runtime directory beside the log,
    # so that a server the test SIGKILLs leaves nothing behind in the system's temp directory.
    defaults = {
        "SLOTS_WORKERS": "2",
        "SLOTS_PORT": str(port),
        "SLOTS_DRAIN_SECONDS": "0",
        "SLOTS_RUNTIME_DIR": str(log.parent / f"runtime-{port}"),
    }
    full_env = environment(database_url, redis_url, **{**defaults, **env})
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slots_service", "serve"],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    for _ in range(300):
        try:
            if httpx.get(served.base + "/readyz", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}: {served.errors()}")
        time.sleep(0.1)
    served.kill()
    raise RuntimeError("server not ready")


def admin_client(base: str, connections: int = 200) -> httpx.AsyncClient:
    """A caller with every scope, `connections` at once."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, limits=limits, timeout=30
    )


async def put_catalog(http: httpx.AsyncClient, office: dict[str, Any] = OFFICE) -> None:
    """The test clock at NOW, the conftest service, and `office` as the conftest office."""
    assert (await http.put("/v1/admin/clock", json={"now": NOW})).status_code == 200
    assert (await http.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).status_code == 200
    assert (await http.put(f"/v1/offices/{OFFICE_ID}", json=office)).status_code == 200
