"""Logging set-up. Nothing logs a name, phone or identity number: the rules log ids only."""

from __future__ import annotations

import logging
import sys
import traceback


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Access logs would carry query strings; the service's own logs are enough.
    logging.getLogger("granian.access").setLevel(logging.WARNING)


def log_fault(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an unexpected error by kind and place, never by its text: a driver's message may
    quote the values of a request (a name, a phone)."""
    where = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s: %s\n%s", what, type(exc).__qualname__, where)
