"""The pure parts of `slots-service bench`, its load generator against a stub server, and the
bare app of its HTTP ceilings against the load generator's requests."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from slots_service.bench import ceilings, loadgen
from slots_service.bench import limits as benchlimits
from slots_service.bench import report as benchreport
from slots_service.bench import stats as benchstats
from slots_service.bench.ceilings import app as bareapp
from slots_service.bench.ceilings import gate, http, pg

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


def test_parse_limits_takes_the_last_line_of_a_file() -> None:
    out = "measured on 2026-11-25\n" + LIMITS_LINE + "\n\n"
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


def test_read_limits_none_and_files(tmp_path: Path) -> None:
    durations = ceilings.Durations(seconds=10, warmup=2)
    said: list[str] = []
    assert benchlimits.read_limits("none", tmp_path, durations, said.append)[0] is None
    saved = tmp_path / "limits.json"
    saved.write_text(LIMITS_LINE + "\n")
    limits, note = benchlimits.read_limits(str(saved), tmp_path, durations, said.append)
    assert limits is not None
    assert limits["L_pg"] == 9000
    assert note == f"from {saved}"
    missing = tmp_path / "nothing.json"
    limits, note = benchlimits.read_limits(str(missing), tmp_path, durations, said.append)
    assert limits is None
    assert note.startswith(f"could not read {missing}")
    assert said == []  # nothing measured


PGBENCH_OUT = """pgbench (18.6)
transaction type: /x/booking.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 83451
number of failed transactions: 0 (0.000%)
latency average = 3.822 ms
latency stddev = 3.901 ms
initial connection time = 51.097 ms
tps = 8372.913745 (without initial connection time)
"""


def test_parse_pgbench_summary() -> None:
    assert pg.parse_pgbench(PGBENCH_OUT) == pg.Pgbench(8372.913745, 0, 3.822)
    failing = PGBENCH_OUT.replace(
        "failed transactions: 0 (0.000%)", "failed transactions: 7 (0.01%)"
    )
    assert pg.parse_pgbench(failing).failed == 7
    assert pg.parse_pgbench("pgbench: error: connection refused\n") == pg.Pgbench(None, None, None)


def test_a_ceiling_counts_only_a_clean_pgbench_run() -> None:
    good = pg._ceiling("L_pg", pg.parse_pgbench(PGBENCH_OUT), "pgbench 32 clients")
    assert good == ceilings.Ceiling("L_pg", 8372, "pgbench 32 clients (latency avg 3.822 ms)")
    assert good.line().startswith("L_pg ")
    assert good.line().endswith(" 8372/s  pgbench 32 clients (latency avg 3.822 ms)")
    failing = pg._ceiling("L_pg", pg.Pgbench(8000.0, 3, 4.0), "pgbench")
    assert failing.value is None
    assert "n/a" in failing.line()
    assert pg._ceiling("L_hot", pg.Pgbench(None, None, None), "pgbench").value is None


def test_ceiling_durations_follow_the_bench_flags() -> None:
    default = ceilings.Durations(seconds=10, warmup=2)
    assert (default.gate_s, default.gate_warmup_s, default.pg_s, default.hot_s) == (5, 1, 10, 5)
    assert default.total_s == 2 * (1 + 5) + 10 + 5 + 2 * (2 + 10) < 60
    short = ceilings.Durations(seconds=2.5, warmup=0.5)
    assert (short.gate_warmup_s, short.pg_s, short.hot_s) == (0.5, 3, 2)  # whole seconds, >= 1
    assert ceilings.Durations(seconds=0.1, warmup=0).hot_s == 1


def test_gate_calls_are_resp_evalsha_of_take_lua_without_attempts() -> None:
    calls = gate._calls("abc123")
    assert len(calls) == gate.POOL
    parts = calls[0].split(b"\r\n")
    assert parts[0] == b"*9"
    assert parts[2::2][:3] == [b"EVALSHA", b"abc123", b"2"]
    day = parts[8].decode()
    assert day in gate.DAYS
    assert parts[10].decode() == f"{day}:tries:ceiling"
    assert parts[12].decode() in gate.WINDOWS
    assert parts[14::2][:3] == [b"1", b"0", b"0"]  # 1 seat, attempt limit 0 (off)
    assert gate._resp("PING") == b"*1\r\n$4\r\nPING\r\n"


class _Sink:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> None:
        return None


async def test_pipelined_gate_client_counts_replies_split_anywhere() -> None:
    state = gate._PipeState(done=asyncio.get_running_loop().create_future(), open=1)
    conn = gate._Piped(state, [b"batch-a", b"batch-b"], first=0)
    sink = _Sink()
    conn.connection_made(sink)  # type: ignore[arg-type]
    replies = b":99\r\n" * (gate.PIPELINE - 1) + b"-ERR x\r\n"
    conn.data_received(replies[:3])
    conn.data_received(replies[3:4])  # a CRLF split across two reads
    conn.data_received(replies[4:])
    assert state.calls == gate.PIPELINE
    assert sink.written == [b"batch-a", b"batch-b"]  # all replied: the next batch
    state.stopping = True
    conn.data_received(b":1\r" + b"\n:1\r\n" * (gate.PIPELINE - 1))
    assert state.calls == 2 * gate.PIPELINE
    assert sink.closed
    assert state.done.done()


async def test_bare_app_takes_what_the_load_generator_sends() -> None:
    """The HTTP ceilings' requests, as loadgen.py builds them from http._spec, all answer 2xx."""
    durations = ceilings.Durations(seconds=1, warmup=0)
    async with AsyncTestClient(app=bareapp.app) as client:
        for post in (False, True):
            spec = http._spec(1234, durations, post)
            raw = loadgen._request_maker(spec)(0)
            head, _, body = raw.partition(b"\r\n\r\n")
            method, path, _ = head.split(b"\r\n")[0].decode().split(" ")
            answer = await client.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == (201 if post else 200), answer.text
        bad = await client.post("/v1/bookings", json={"office_id": "x"})
        assert bad.status_code == 400  # the body is decoded, not ignored


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
        'slots_book_batch_size_bucket{le="1.0"} 2.0\n'
        "slots_book_batch_size_count 2.0\n"
        "slots_book_batch_size_sum 2.0\n"
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
    after["slots_book_batch_size_count"] = 6.0  # 4 batches of 48 bookings in all
    after["slots_book_batch_size_sum"] = 50.0
    after['slots_book_batches_total{outcome="committed"}'] = 3.0
    after['slots_book_batches_total{outcome="rolled_back"}'] = 1.0
    assert benchstats.server_side(before, after) == {
        "batches": 4,
        "batch_mean": 12.0,
        "batch_outcomes": {"committed": 3, "rolled_back": 1},
        "gate": {"taken": 50, "full": 100},
        "outcomes": {"created": 50, "slot_full": 100},
        "handled": 150,
        "mean_ms": 20.0,  # 3 s over 150 requests; /metrics left out
    }


def test_cpu_meter_counts_a_process_that_came_and_went_inside_the_measurement() -> None:
    """As a Postgres backend of a connection opened and closed during a scenario: its CPU is
    in its parent's total (reaped children), and the meter counts it."""
    burn = "import time\nwhile time.process_time() < 0.3: pass"
    parent = (
        "import subprocess, sys; input(); subprocess.run([sys.executable, '-c', sys.argv[1]]);"
        " print('ended', flush=True); input()"
    )
    argv = [sys.executable, "-c", parent, burn]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as tree:
        assert tree.stdin is not None
        assert tree.stdout is not None
        meter = benchstats.CpuMeter({"tree": tree.pid})
        tree.stdin.write(b"go\n")
        tree.stdin.flush()
        assert tree.stdout.readline() == b"ended\n"  # the child came, burnt and went
        meter.stop(loadgen_cpu_s=0.0)
        tree.communicate(b"\n")
    assert meter.seconds["tree"] >= 0.3


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


def test_profile_summary_counts_own_and_inclusive_time(tmp_path: Path) -> None:
    from slots_service.bench import profile

    folded = tmp_path / "api.txt"
    root = 'process 1:"python -m slots_service serve"'
    folded.write_text(
        f"{root};main (/x/site-packages/granian/server.py:1);"
        "book (/x/slots_service/booking.py:10);_statement (/x/slots_service/booking.py:20) 3\n"
        f"{root};main (/x/site-packages/granian/server.py:1);"
        "book (/x/slots_service/booking.py:10) 1\n"
        "not a stack line\n"
    )
    text = profile.summary(folded)
    assert "4 samples while busy" in text
    assert "75.0 %  _statement (booking.py)" in text  # own: 3 of 4
    assert "100.0 %  book (booking.py)" in text  # under: every sample
    assert "granian" not in text.split("this service's code:")[1]  # ours only
    assert "100.0 %  booking rules, the statement's values, the answer" in text  # by part
    argv = profile.wrap(["python", "-m", "slots_service", "serve"], tmp_path / "out.txt")
    assert argv[1:3] == ["record", "--subprocesses"]
    assert argv[-4:] == ["python", "-m", "slots_service", "serve"]


def test_a_profile_sample_belongs_to_the_part_nearest_its_top() -> None:
    from slots_service.bench import profile

    loop = "run (asyncio/events.py)"
    asked = [loop, "answer (fast_booking.py)", "book (booking.py)", "execute (asyncpg/pool.py)"]
    assert profile.part_of(asked) == "Postgres: the driver and group commit"
    sent = [loop, "answer (fast_booking.py)", "send_body (litestar/response/base.py)"]
    assert profile.part_of(sent) == "Litestar"
    assert profile.part_of([loop, "answer (fast_booking.py)"]).startswith("the route")
    assert profile.part_of([loop, "take (seats.py)", "call (resp.py)"]) == "the Redis gate"
    assert profile.part_of(["<module> (<string>)", "spawn_main", loop]) == profile.NATIVE
    imported = ["<module> (app.py)", "_find_and_load (<frozen importlib._bootstrap>)"]
    assert profile.part_of([*imported, "<module> (litestar/app.py)"]) == profile.STARTING


def test_the_bench_children_import_the_code_the_bench_runs() -> None:
    """`python -m` puts the working directory first on sys.path: the children start where
    this package was imported from, so they run its code whatever the caller's directory."""
    import slots_service
    from slots_service.bench.procs import CODE_ROOT

    assert (CODE_ROOT / "slots_service" / "__init__.py").samefile(slots_service.__file__)
