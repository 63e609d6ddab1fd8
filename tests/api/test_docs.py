"""The repository explains itself: docs/ covers every route, setting, error code, job and
metric; no tracked file points outside the repository; and the README's quick start, run as
written, books and cancels a seat whatever day it is."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import pytest

from slots_service import errors, jobs, metrics
from tests.conftest import set_clock

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
# The sibling folder a clone does not have; spelled in two pieces so this file does not hold it.
OUTSIDE = "../" + "shared"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


# ---------------------------------------------------------------- docs in step with the code


async def test_every_route_of_the_openapi_document_is_in_the_api_doc(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    routes = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method in operations
        if method in HTTP_METHODS
    ]
    text = API_DOC.read_text()
    assert len(routes) >= 20
    assert [route for route in routes if route not in text] == []


def test_every_error_code_is_in_the_api_doc() -> None:
    kinds: list[type[errors.DomainError]] = [
        errors.DomainError,
        *errors.DomainError.__subclasses__(),
    ]
    codes = {kind.code for kind in kinds}
    text = API_DOC.read_text()
    assert sorted(code for code in codes if f"`{code}`" not in text) == []


def test_every_job_is_in_the_api_and_operations_docs() -> None:
    for doc in (API_DOC, OPERATIONS_DOC):
        text = doc.read_text()
        assert [job for job in jobs.JOBS if f"`{job}`" not in text] == [], doc.name


def test_every_metric_is_in_the_operations_doc() -> None:
    names = [m.name for m in metrics.registry.collect()]
    text = OPERATIONS_DOC.read_text()
    assert names
    assert [name for name in names if name not in text] == []


def test_every_setting_is_in_the_operations_doc() -> None:
    source = (ROOT / "slots_service" / "config.py").read_text()
    names = set(re.findall(r'"((?:SLOTS_[A-Z0-9_]+)|DATABASE_URL|REDIS_URL)"', source))
    text = OPERATIONS_DOC.read_text()
    assert {"DATABASE_URL", "REDIS_URL", "SLOTS_API_KEYS", "SLOTS_PII_KEY"} <= names
    assert sorted(name for name in names if f"`{name}`" not in text) == []


def test_no_tracked_file_points_outside_the_repository() -> None:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    pointing = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if path.is_file() and OUTSIDE.encode() in path.read_bytes():
            pointing.append(name)
    assert pointing == [], f"these files name {OUTSIDE}, which a clone does not have"


# ---------------------------------------------------------------- the README's quick start


@dataclass(frozen=True)
class Call:
    """One curl command of the quick start; `$NAME`s are filled in when it runs."""

    method: str
    path: str
    body: str | None
    into: str | None  # the shell variable that keeps the answer


@dataclass(frozen=True)
class Extract:
    """`NAME=$(echo "$SOURCE" | python3 -c '...')`: a value read from an earlier answer."""

    into: str
    source: str
    code: str


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks: list[str] = [
        block
        for block in re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
        if "/availability" in block and "/v1/bookings" in block
    ]
    assert len(blocks) == 1, "the README has one quick-start block"
    return blocks[0]


def curl(command: str, heredoc: str | None, into: str | None) -> Call:
    words = shlex.split(command)
    assert words[0] == "curl", command
    headers = [words[k + 1] for k, word in enumerate(words) if word == "-H"]
    assert "Authorization: Bearer $KEY" in headers, command
    data = next((words[k + 1] for k, word in enumerate(words) if word == "-d"), None)
    if data == "@-":
        data = heredoc
    if data is not None:
        assert "Content-Type: application/json" in headers, command
    (url,) = [word for word in words if word.startswith("localhost:8000/")]
    method = "POST" if data is not None else "GET"
    return Call(method, url.removeprefix("localhost:8000"), data, into)


def steps(block: str) -> list[Call | Extract]:
    """The quick start as calls and extractions, read the way sh would read it."""
    lines = block.replace("\\\n", " ").splitlines()
    found: list[Call | Extract] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#") or line.startswith("echo "):
            continue
        if re.fullmatch(r"KEY=\S+\s*(#.*)?", line):
            continue
        extract = re.fullmatch(r"""(\w+)=\$\(echo "\$(\w+)" \| python3 -c '([^']*)'\)""", line)
        if extract:
            found.append(Extract(extract[1], extract[2], extract[3]))
            continue
        command = re.fullmatch(r"(?:(\w+)=\$\()?(curl .*)", line)
        assert command, f"the quick start has a line this test cannot read: {line!r}"
        into, text = command[1], command[2]
        heredoc = None
        if text.endswith("<<EOF"):
            text = text.removesuffix("<<EOF")
            end = lines.index("EOF", i)
            heredoc = "\n".join(lines[i:end])
            i = end + 1
            if into:
                assert lines[i].strip() == ")", lines[i]
                i += 1
        elif into:
            text = text.removesuffix(")")
        found.append(curl(text, heredoc, into))
    return found


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: variables[m[1]], text)


async def run(client: httpx.AsyncClient, block: str) -> list[tuple[str, str, httpx.Response]]:
    """Every step, in order, through the app; returns (method, path, answer) per call."""
    variables: dict[str, str] = {}
    answers = []
    for step in steps(block):
        if isinstance(step, Extract):
            python = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                step.code,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await python.communicate(variables[step.source].encode())
            assert python.returncode == 0, step.code
            variables[step.into] = out.decode().strip()
            continue
        path = expand(step.path, variables)
        body = None if step.body is None else expand(step.body, variables)
        if body is not None:
            json.loads(body)  # the README's body is valid JSON once the shell filled it in
        response = await client.request(
            step.method,
            path,
            content=body,
            headers={"Content-Type": "application/json"} if body is not None else None,
        )
        answers.append((step.method, path, response))
        if step.into:
            variables[step.into] = response.text
    return answers


async def load_demo_catalog(client: httpx.AsyncClient) -> None:
    """The offices and services `make dev` loads, through the admin API."""
    text = resources.files("slots_service.demo").joinpath("catalog.json").read_text()
    catalog = json.loads(text)
    for service_id, body in catalog["services"].items():
        assert (await client.put(f"/v1/services/{service_id}", json=body)).status_code == 200
    for office_id, body in catalog["offices"].items():
        assert (await client.put(f"/v1/offices/{office_id}", json=body)).status_code == 200


def test_the_quick_start_names_no_fixed_date() -> None:
    assert re.search(r"\d{4}-\d{2}-\d{2}", quick_start()) is None


@pytest.mark.parametrize(
    "now",
    [
        "2026-11-23T10:00:00+08:00",  # a Monday morning
        "2026-11-24T19:30:00+08:00",  # after 18:00: tomorrow can no longer be cancelled
        "2026-11-27T23:59:00+08:00",  # a Friday, a minute before the next day opens
        "2026-11-28T12:00:00+08:00",  # a Saturday, the office closed
        None,  # the real date the suite runs on
    ],
)
async def test_the_quick_start_books_reads_and_cancels(
    client: httpx.AsyncClient, now: str | None
) -> None:
    if now is not None:
        await set_clock(client, now)
    await load_demo_catalog(client)
    answers = await run(client, quick_start())

    (get_, availability_path, availability), (post, book_path, booked) = answers[:2]
    assert (get_, post, book_path) == ("GET", "POST", "/v1/bookings")
    assert availability.status_code == 200, availability.text
    assert booked.status_code == 201, booked.text
    booking = booked.json()
    last_day = availability.json()["days"][-1]
    first_window = last_day["windows"][0]
    assert (booking["date"], booking["start"]) == (last_day["date"], first_window["start"])
    assert booking["status"] == "booked"
    assert [(method, path) for method, path, _ in answers[2:]] == [
        ("GET", f"/v1/bookings/{booking['id']}"),
        ("POST", f"/v1/bookings/{booking['id']}/cancel"),
    ]
    read, cancelled = answers[2][2], answers[3][2]
    assert read.status_code == 200
    assert read.json() == booking
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancelled_by"] == "person"

    again = (await client.get(availability_path)).json()["days"][-1]
    assert again == last_day  # the seat is free again at once
