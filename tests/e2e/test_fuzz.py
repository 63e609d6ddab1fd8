"""schemathesis over the OpenAPI document, against `slots-service serve` on loopback with the
demo catalog and an admin key: no input answers 500, every status, content type and body is
the one the document promises, and the server logs no unexpected error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slots_service import demo
from slots_service.jobs import run_job
from slots_service.runtime import Runtime
from tests.conftest import ADMIN_KEY
from tests.e2e import serving

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
FUZZ_SECONDS = 60


def _client_env() -> dict[str, str]:
    """The fuzzer's environment without libfaketime, if the suite runs under it (make
    test-dates, `faketime make test`): the server keeps the shifted clock, the fuzzer reads no
    date, and its threads' timed waits would never end under a clock a year ahead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")}
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and "faketime" not in p]
    env["LD_PRELOAD"] = ":".join(preload)
    return env


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found is not None, "schemathesis is a dev dependency (pip install -e '.[dev]')"
    return found


@pytest.mark.timeout(FUZZ_SECONDS + 120)
async def test_schemathesis_finds_no_failure(
    rt: Runtime, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    await demo.load(rt)
    await run_job(rt, "open-horizon")
    served = serving.serve(database_url, redis_url, tmp_path / "serve.log", SLOTS_WORKERS="1")
    try:
        run = subprocess.run(  # noqa: ASYNC221 - the test waits for the fuzzer, nothing else runs
            [
                _schemathesis(),
                "run",
                f"{served.base}/schema/openapi.json",
                "--header",
                f"Authorization: Bearer {ADMIN_KEY}",
                "--checks",
                CHECKS,
                "--max-time",
                str(FUZZ_SECONDS),
                "--request-timeout",
                "10",
                "--no-color",
            ],
            cwd=tmp_path,
            env=_client_env(),
            capture_output=True,
            text=True,
            timeout=FUZZ_SECONDS + 90,
            check=False,
        )
    finally:
        served.stop()
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert " 0 passed" not in report, report  # it really sent requests
    assert served.errors() == "", served.errors()
