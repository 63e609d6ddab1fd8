"""Logging set-up. Nothing logs a name, phone or identity number: the rules log ids only.

Every HTTP request is one JSON line on `slots_service.access` (python-json-logger): method,
route template (never the path or query string, which may carry values), status, duration,
request id, booking id. Other lines are text, or JSON with SLOTS_LOG_FORMAT=json.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import time
import traceback
from typing import Any, TextIO

import msgspec
from pythonjsonlogger.json import JsonFormatter

access = logging.getLogger("slots_service.access")
_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, pid, message, and the record's extras."""
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        timestamp=False,
    )


def configure(level: str, log_format: str = "text", access_log: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(_TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Access logs would carry query strings; the service's own request lines are enough.
    logging.getLogger("granian.access").setLevel(logging.WARNING)
    # Two lines per job run every 2 s ("Running job", "executed successfully") drown the log;
    # jobs.py writes its own line when a job did something, and APScheduler's warnings stay.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    # Request lines whatever SLOTS_LOG_LEVEL says (which is about the service's own lines).
    lines = logging.StreamHandler(sys.stderr)
    lines.setFormatter(json_formatter())
    _direct[0] = lines
    access.handlers = [lines]
    access.propagate = False
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)


def log_request(
    method: str,
    route: str,
    status: int,
    seconds: float,
    request_id: str,
    booking_id: str | None,
) -> None:
    """The one line of a request. Only ids and the route template: never a body."""
    if not access.isEnabledFor(logging.INFO):
        return
    fields: dict[str, object] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": request_id,
    }
    if booking_id is not None:
        fields["booking_id"] = booking_id
    handler = _direct[0]
    if handler is not None and access.handlers == [handler] and not _diverted():
        _write_line(handler, fields)
        return
    access.info("request", extra=fields)


# The request lines' own handler, set by configure: while it is the access logger's only way
# out, a line is written straight to its stream, the same JSON object that JsonFormatter
# makes (time, level, logger, pid, message, the fields), without a LogRecord per request.
_direct: list[logging.StreamHandler[TextIO] | None] = [None]
_encode = msgspec.json.Encoder().encode
_second: list[Any] = [-1, ""]


def _diverted() -> bool:
    """Something besides the handler would see the record (filters, propagation)."""
    return access.propagate or bool(access.filters)


def _asctime(now: float) -> str:
    """logging's default asctime, `2026-12-01 19:47:58,753`, the second formatted once."""
    second = int(now)
    if _second[0] != second:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return f"{_second[1]},{int((now - second) * 1000):03d}"


def _write_line(handler: logging.StreamHandler[TextIO], fields: dict[str, object]) -> None:
    """The line, written with the others of this turn of the event loop in one write after it
    (a write per request was some 4 % of the loop's time under load); at once when no loop
    runs. Only the loop's thread logs requests."""
    text = _line(fields)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop: nothing would flush it later
        _write(handler, text)
        return
    _pending.append(text)
    if _flush_on[0] is not loop:  # none due on this loop (a loop that ended took its own)
        _flush_on[0] = loop
        loop.call_soon(_flush, handler)


_pending: list[str] = []
_flush_on: list[asyncio.AbstractEventLoop | None] = [None]


def _flush(handler: logging.StreamHandler[TextIO]) -> None:
    _flush_on[0] = None
    text = "".join(_pending)
    _pending.clear()
    _write(handler, text)


@atexit.register
def _flush_at_exit() -> None:
    handler = _direct[0]
    if _pending and handler is not None:
        _flush(handler)


def _line(fields: dict[str, object]) -> str:
    line = {
        "time": _asctime(time.time()),
        "level": "INFO",
        "logger": access.name,
        "pid": os.getpid(),
        "message": "request",
        **fields,
    }
    return _encode(line).decode() + "\n"


def _write(handler: logging.StreamHandler[TextIO], text: str) -> None:
    with handler.lock or _NO_LOCK:
        try:
            handler.stream.write(text)
            handler.stream.flush()
        except Exception:  # as logging does: a broken stream costs the line, not the request
            handler.handleError(logging.makeLogRecord({"msg": "request"}))


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_NO_LOCK = _NoLock()


def log_fault(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an unexpected error by kind and place, never by its text: a driver's message may
    quote the values of a request (a name, a phone)."""
    where = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s: %s\n%s", what, type(exc).__qualname__, where)
