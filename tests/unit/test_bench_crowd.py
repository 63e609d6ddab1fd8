"""The bench's crowd: a fixed number of requests after one `go` request, the release plan, and
the last line's shape."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slots_service.bench import crowd, loadgen
from slots_service.bench.report import Scenario, issue_json, summary_table
from slots_service.bench.stats import LogScan


async def test_a_crowd_sends_go_first_then_exactly_its_total() -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
            seen.append(head.split(b" ", 1)[0])
            sold = sum(1 for m in seen if m == b"POST") > 3
            status, body = (b"409 Conflict", b'{"code":"slot_full"}') if sold else (b"201", b"{}")
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    go = crowd.clock_request("127.0.0.1", port, "t", datetime(2026, 12, 4, tzinfo=UTC))
    spec: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "token": "t",
        "concurrency": 7,
        "total": 50,
        "warmup": 0,
        "seconds": 30,
        "kind": "book",
        "office_id": "bench-crowd",
        "service_id": "bench-service",
        "slots": [["2026-12-18", "08:00"]],
        "tag": 1,
        "first_person": 0,
        "go": go,
    }
    async with server:
        result = await loadgen._drive(spec)
    assert seen[0] == b"PUT"  # the clock moved before any booking
    assert seen.count(b"POST") == 50 == result["requests"] == result["persons"]
    assert result["statuses"] == {"201": 3, "409 slot_full": 47}
    assert result["abandoned"] == 0
    assert result["conn_errors"] == 0
    assert result["connections"] == 7
    assert result["answers_per_s"] > 0
    assert result["first_answer_ms"] <= result["last_201_ms"] <= result["last_answer_ms"]


def test_the_released_day_enters_the_horizon_at_its_opening_instant() -> None:
    now = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 03:00 on the 2nd in Shanghai
    found = crowd.plan("bench-crowd", 500, 14, now)
    assert found.opens == datetime(2026, 12, 4, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert found.day == found.opens.date() + timedelta(days=14)
    assert found.seats == 500
    assert len(set(found.starts)) == len(found.starts) == crowd.CROWD_WINDOWS
    body = crowd.office_body(found)
    assert body["hours"]["mon"][0] == {"start": "08:00", "end": "13:00", "capacity": 50}


def _scenario(name: str, result: dict[str, Any]) -> Scenario:
    base = {
        "seconds": 10.0,
        "rps": 0.0,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0, "mean": 1.5},
        "statuses_all": {"200": 1000},
        "cpu_s_by": {"api": 0.5, "postgres": 0.1},
    }
    return Scenario(name, base | result, server={}, log=LogScan(0, {}, []))


def test_the_last_line_has_the_issue_shape_in_integers() -> None:
    results = {
        "book": _scenario("book", {"statuses": {"201": 12345}}),
        "flash-w2": _scenario("flash-w2", {"statuses": {"201": 50, "409 slot_full": 950}}),
        "crowd": _scenario(
            "crowd",
            {
                "statuses": {"201": 500, "409 slot_full": 19500},
                "answers_per_s": 5432.1,
                "crowd": {
                    "answers_per_s": 5432.1,
                    "sold": 500,
                    "oversold": 0,
                    "sellout_ms": 812.4,
                    "p50_ms": 120.5,
                    "p99_ms": 900.2,
                    "conn_errors": 0,
                    "capacity": 500,
                },
            },
        ),
    }
    limits: dict[str, int | None] = {"L_pg": 9000, "L_hot": 5000}
    line = json.loads(issue_json(results, limits))
    assert list(line)[:7] == [
        "book",
        "hot",
        "flash",
        "availability",
        "book_no_redis",
        "crowd",
        "limits",
    ]
    assert line["book"] == 1234
    assert line["hot"] is None
    assert line["flash_w2"] == 100
    assert line["crowd"] == {
        "answers_per_s": 5432,
        "sold": 500,
        "oversold": 0,
        "sellout_ms": 812,
        "p50_ms": 120,
        "p99_ms": 900,
        "conn_errors": 0,
    }
    assert line["limits"] == limits
    table = summary_table(results, limits)
    assert "500 µs" in table  # the API's CPU per request answered: 0.5 s / 1000
    assert "sold 500 of 500, oversold 0" in table
