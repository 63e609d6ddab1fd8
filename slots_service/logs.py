"""Logging set-up. Nothing logs a name, phone or identity number: the rules log ids only.

Every HTTP request is one JSON line on `slots_service.access` (python-json-logger): method,
route template (never the path or query string, which may carry values), status, duration,
request id, booking id. Other lines are text, or JSON with SLOTS_LOG_FORMAT=json.
"""

from __future__ import annotations

import logging
import sys
import traceback

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
    # Request lines whatever SLOTS_LOG_LEVEL says (which is about the service's own lines).
    lines = logging.StreamHandler(sys.stderr)
    lines.setFormatter(json_formatter())
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
    access.info("request", extra=fields)


def log_fault(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an unexpected error by kind and place, never by its text: a driver's message may
    quote the values of a request (a name, a phone)."""
    where = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s: %s\n%s", what, type(exc).__qualname__, where)
