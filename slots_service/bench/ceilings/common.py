"""What every ceiling shares: how long it runs, and what it found."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Durations:
    """How long each ceiling runs, from the bench's own --seconds and --warmup. The gate and
    the hot row get half: they are steady, and the whole stays near a minute by default."""

    seconds: float
    warmup: float

    @property
    def gate_s(self) -> float:
        return self.seconds / 2

    @property
    def gate_warmup_s(self) -> float:
        return min(self.warmup, 1.0)

    @property
    def pg_s(self) -> int:  # pgbench -T takes whole seconds
        return max(1, math.ceil(self.seconds))

    @property
    def hot_s(self) -> int:
        return max(1, math.ceil(self.seconds / 2))

    @property
    def total_s(self) -> float:
        """The measuring itself, without starting the servers."""
        gate = 2 * (self.gate_warmup_s + self.gate_s)
        return gate + self.pg_s + self.hot_s + 2 * (self.warmup + self.seconds)


@dataclass(frozen=True)
class Ceiling:
    """One L figure (per second; None: not measured), and what it measured with which tool."""

    key: str
    value: int | None
    how: str

    def line(self) -> str:
        shown = f"{self.value}/s" if self.value is not None else "n/a"
        return f"{self.key:<16} {shown:>9}  {self.how}"


def failed(keys: tuple[str, ...], why: str) -> list[Ceiling]:
    return [Ceiling(key, None, why) for key in keys]
