"""Logging set-up. Nothing logs a name, phone or identity number: the rules log ids only."""

from __future__ import annotations

import logging
import sys


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Access logs would carry query strings; the service's own logs are enough.
    logging.getLogger("granian.access").setLevel(logging.WARNING)
