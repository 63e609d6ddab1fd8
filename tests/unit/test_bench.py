"""The pure parts of `slots-service bench`, and its load generator against a stub server."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from slots_service.bench import limits as benchlimits
from slots_service.bench import loadgen
from slots_service.bench import report as benchreport
from slots_service.bench import stats as benchstats

LIMITS_LINE = (
    '{"L_redis_lua": 12345, "L_redis_lua_p16": 150000, "L_pg": 9000.7, "L_hot": 2100, '
    '"L_http_get": 21000, "L_http_post": null}'
)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 95) == 95.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # rank ceil(0.5 * 4) = 2
    assert loadgen.percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0
    assert loadgen.percentile([], 50) is None
    with pytest.raises(ValueError, match="q must be"):
        loadgen.percentile(values, 0)
    with pytest.raises(ValueError, match="q must be"):
        loadgen.percentile(values, 101)


def test_latency_summary_in_milliseconds_from_unsorted_seconds() -> None:
    summary = loadgen.latency_summary([0.003, 0.001, 0.002, 0.010])
    assert summary == {"p50": 2.0, "p95": 10.0, "p99": 10.0, "max": 10.0, "mean": 4.0}
    empty = loadgen.latency_summary([])
    assert empty == {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}


def test_parse_limits_takes_the_last_line_of_run_sh() -> None:
    out = "[limits 10:00:00] progress on stdout by mistake\n" + LIMITS_LINE + "\n\n"
    limits = benchlimits.parse_limits(out)
    assert limits == {
        "L_redis_lua": 12345,
        "L_redis_lua_p16": 150000,
        "L_pg": 9000,
        "L_hot": 2100,
        "L_http_get": 21000,
        "L_http_post": None,
    }


def test_parse_limits_fills_missing_keys_and_reads_pretty_files() -> None:
    pretty = json.dumps({"L_pg": 5000, "L_hot": 0, "L_http_get": "fast"}, indent=2)
    limits = benchlimits.parse_limits(pretty)
    assert limits["L_pg"] == 5000
    assert limits["L_hot"] is None  # zero is no ceiling
    assert limits["L_http_get"] is None  # not a number
    assert limits["L_redis_lua"] is None
    assert set(limits) == set(benchlimits.LIMIT_KEYS)


@pytest.mark.parametrize(
    "text",
    ["", "no json here", "[1, 2, 3]", '{"something": 1}', "true"],
)
def test_parse_limits_refuses_what_is_not_a_limits_object(text: str) -> None:
    with pytest.raises(ValueError, match=r"JSON object|no output|none of"):
        benchlimits.parse_limits(text)


def test_ratio_and_its_format() -> None:
    assert benchreport.ratio(250.0, 1000) == 0.25
    assert benchreport.ratio(250.0, None) is None
    assert benchreport.ratio(250.0, 0) is None
    assert benchreport.ratio(None, 1000) is None
    assert benchreport.format_ratio(250.0, 1000) == "0.250"
    assert benchreport.format_ratio(1.0, 3) == "0.333"
    assert benchreport.format_ratio(12345.0, 1000) == "12.3"
    assert benchreport.format_ratio(250.0, None) == "n/a"


def test_people_are_distinct_and_valid() -> None:
    seen_ids, seen_phones = set(), set()
    for tag in (0, 99_999):
        for n in (0, 1, 9, 10, 9_999_999):
            id_number, phone = loadgen.person(n, tag)
            assert re.fullmatch(r"[A-Z0-9]{4,32}", id_number)
            assert re.fullmatch(r"\+[1-9][0-9]{6,14}", phone)
            seen_ids.add(id_number)
            seen_phones.add(phone)
    assert len(seen_ids) == len(seen_phones) == 10
    with pytest.raises(ValueError, match="out of range"):
        loadgen.person(10_000_000, 1)


def test_parse_response_content_length_and_pipelined_rest() -> None:
    body = b'{"code":"slot_full"}'
    one = b"HTTP/1.1 409 Conflict\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    buf = bytearray(one + b"HTTP/1.1 200 OK\r\n")
    assert loadgen.parse_response(buf[: len(one) - 1]) is None  # incomplete body
    assert loadgen.parse_response(buf) == (409, body, len(one))
    assert loadgen.parse_response(b"HTTP/1.1 200 OK\r\ncontent-le") is None  # incomplete head
    assert loadgen.status_label(409, body) == "409 slot_full"
    assert loadgen.status_label(201, b"{}") == "201"
    assert loadgen.status_label(500, b"not json") == "500"


def test_parse_response_chunked() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
    )
    assert loadgen.parse_response(raw) == (200, b"Wikipedia", len(raw))
    assert loadgen.parse_response(raw[:-2]) is None
    with pytest.raises(ValueError, match="framed"):
        loadgen.parse_response(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nbody")


async def test_load_generator_sends_new_people_and_counts_answers() -> None:
    """The generator against a stub: every request a new person, every answer counted."""
    seen: list[dict[str, object]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            seen.append(json.loads(await reader.readexactly(length)))
            full = len(seen) > 5
            status, body = (b"409 Conflict", b'{"code":"slot_full"}') if full else (b"201", b"{}")
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "token": "t",
        "concurrency": 4,
        "warmup": 0.05,
        "seconds": 0.2,
        "kind": "book",
        "office_id": "bench-flash",
        "service_id": "bench-service",
        "slots": [["2026-11-25", "10:00"], ["2026-11-26", "10:30"]],
        "tag": 42,
        "first_person": 100,
    }
    async with server:
        result = await loadgen._drive(spec)
    assert result["created_all"] == 5
    assert result["persons"] == len(seen) == sum(result["statuses_all"].values())
    assert result["statuses_all"]["409 slot_full"] == len(seen) - 5
    assert result["requests"] == sum(result["statuses"].values()) > 0
    assert result["abandoned"] == 0
    assert result["conn_errors"] == 0
    ids = [p["person"]["id_number"] for p in seen]  # type: ignore[index]
    assert len(set(ids)) == len(ids)
    assert ids[0] == loadgen.person(100, 42)[0]
    assert {(p["date"], p["start"]) for p in seen} == {
        ("2026-11-25", "10:00"),
        ("2026-11-26", "10:30"),
    }
    assert result["latency_ms"]["p50"] is not None


def test_server_side_counts_from_two_metrics_scrapes() -> None:
    before = benchstats.parse_metrics(
        "# HELP slots_redis_gate_total Redis gate answers\n"
        'slots_redis_gate_total{result="taken"} 10.0\n'
        'slots_bookings_total{outcome="created"} 10.0\n'
        'slots_http_request_duration_seconds_bucket{le="0.1",method="POST"} 3.0\n'
        'slots_http_request_duration_seconds_sum{method="POST",route="/v1/bookings"} 1.0\n'
        'slots_http_request_duration_seconds_count{method="POST",route="/v1/bookings"} 10.0\n'
        'slots_http_request_duration_seconds_sum{method="GET",route="/metrics"} 0.5\n'
        'slots_http_request_duration_seconds_count{method="GET",route="/metrics"} 1.0\n'
    )
    assert not any("_bucket" in key for key in before)
    after = dict(before)
    after['slots_redis_gate_total{result="taken"}'] = 60.0
    after['slots_redis_gate_total{result="full"}'] = 100.0
    after['slots_bookings_total{outcome="created"}'] = 60.0
    after['slots_bookings_total{outcome="slot_full"}'] = 100.0
    after['slots_http_request_duration_seconds_sum{method="POST",route="/v1/bookings"}'] = 4.0
    after['slots_http_request_duration_seconds_count{method="POST",route="/v1/bookings"}'] = 160.0
    after['slots_http_request_duration_seconds_sum{method="GET",route="/metrics"}'] = 9.0
    assert benchstats.server_side(before, after) == {
        "gate": {"taken": 50, "full": 100},
        "outcomes": {"created": 50, "slot_full": 100},
        "handled": 150,
        "mean_ms": 20.0,  # 3 s over 150 requests; /metrics left out
    }


def test_scan_log_counts_errors_and_warnings_of_both_formats() -> None:
    log = "\n".join(
        [
            "[INFO] Started worker-1",
            "2026-11-23 16:11:51,444 WARNING slots_service.counters redis unreachable: Timeout",
            "2026-11-23 16:11:55,001 WARNING slots_service.counters redis unreachable: Timeout",
            "2026-11-23 16:12:00,000 ERROR litestar boom",
            "Traceback (most recent call last):",
            '  File "x.py", line 1, in <module>',
            "ValueError: boom",
            "[WARNING] granian worker slow",
            "Traceback (most recent call last):",
            "[ERROR] worker crashed",
        ]
    )
    scan = benchstats.scan_log(log)
    assert scan.errors == 3  # the ERROR line (with its traceback), a bare traceback, [ERROR]
    assert scan.warnings == {
        "WARNING slots_service.counters redis unreachable: Timeout": 2,
        "[WARNING] granian worker slow": 1,
    }
    assert scan.first_error[0].endswith("ERROR litestar boom")
    assert scan.first_error[3] == "ValueError: boom"
    assert benchstats.scan_log("[INFO] fine\n") == benchstats.LogScan(0, {}, [])
