"""The image's install, without Docker: the files the Dockerfile's builder stage COPYs go to a
fresh folder, `pip install .` (no extras) runs there into a clean venv, and that venv's
`slots-service serve` answers /readyz against the test session's embedded servers."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from slots_service.devservers import free_port
from tests.conftest import API_KEYS
from tests.e2e.serving import Served

ROOT = Path(__file__).resolve().parents[2]


def builder_stage() -> list[list[str]]:
    """The builder stage's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[list[str]]] = []
    for line in lines:
        words = shlex.split(line)
        if words[0].upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(words)
    (builder,) = [s for s in stages if s[0][-1] == "builder"]
    return builder


def copy_build_context(dest: Path) -> list[str]:
    """Copy what the builder stage COPYs into dest (as its WORKDIR); its RUN lines."""
    runs = []
    for words in builder_stage():
        instruction = words[0].upper()
        if instruction == "COPY":
            assert not any(w.startswith("--") for w in words), words
            *sources, target = words[1:]
            for source in sources:
                for found in sorted(ROOT.glob(source)):
                    into = dest / target
                    if target.endswith("/"):
                        into = into / found.name
                    if found.is_dir():
                        shutil.copytree(
                            found, into, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]")
                        )
                    else:
                        into.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(found, into)
        elif instruction == "RUN":
            runs.append(" ".join(words[1:]))
    return runs


def test_the_install_command_of_the_image_works_in_a_clean_venv(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    runs = copy_build_context(src)
    install = [r for r in runs if "pip install" in r]
    assert install == ["pip install . && pip uninstall -y pip setuptools"], runs
    assert (src / "pyproject.toml").is_file()
    assert not (src / "tests").exists()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The Dockerfile's RUN line as it stands, with the venv's pip first on PATH (as in the image).
    done = subprocess.run(
        ["/bin/sh", "-c", install[0]],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(src)  # the install must not depend on the source tree staying around

    # Runtime dependencies only, installed as a regular (non-editable) package.
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u, slots_service; print(slots_service.__file__);"
            "print(*(m for m in ('pytest', 'hypothesis', 'ruff', 'locust') if u.find_spec(m)))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    where, dev_modules = probe.stdout.splitlines()
    assert Path(where).is_relative_to(venv), where
    assert not (venv / "bin" / "pip").exists()  # uninstalled as in the image
    assert dev_modules == "", f"dev dependencies in the image: {dev_modules}"

    port = free_port()
    log = tmp_path / "serve.log"
    serve_env = {
        **env,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SLOTS_API_KEYS": API_KEYS,
        "SLOTS_PII_KEY": "image-pii-key-0123456789abcdef",
        "SLOTS_WORKERS": "1",
        "SLOTS_PORT": str(port),
        "SLOTS_LOG_LEVEL": "warning",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "slots-service"), "serve"],
            cwd=tmp_path,
            env=serve_env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        ready = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(served.base + "/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert proc.poll() is None, f"serve exited with {proc.returncode}: {log.read_text()}"
        assert ready is not None
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"postgres": "ok", "redis": "ok"}
        metrics = httpx.get(served.base + "/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "slots_redis_up" in metrics.text
    finally:
        code = served.stop()
    assert code == 0, f"serve exited with {code} on SIGTERM: {log.read_text()}"
    assert served.errors() == ""
