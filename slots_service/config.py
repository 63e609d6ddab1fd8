"""Settings read once from the environment (twelve-factor), frozen; secrets never in repr."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

SCOPES = frozenset({"admin", "bookings:read", "bookings:write", "checkin", "events:read"})


class Secret:
    """A value whose repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class ConfigError(ValueError):
    """The environment holds a setting that cannot be used."""


def parse_api_keys(text: str) -> dict[str, frozenset[str]]:
    """`key=scope,scope;key2=scope` -> {key: scopes}."""
    keys: dict[str, frozenset[str]] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, scopes_text = part.partition("=")
        key = key.strip()
        scopes = frozenset(s.strip() for s in scopes_text.split(",") if s.strip())
        if not sep or not key:
            raise ConfigError("SLOTS_API_KEYS: each entry is key=scope,scope")
        unknown = scopes - SCOPES
        if unknown:
            raise ConfigError(f"SLOTS_API_KEYS: unknown scopes {sorted(unknown)}")
        keys[key] = scopes
    return keys


def normalise_database_url(url: str) -> str:
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://") :]
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default="", repr=False)  # may carry a password
    redis_url: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # The scheduler process serves /metrics here (the API serves it on its own port).
    metrics_port: int = 9100
    log_level: str = "info"
    # text (`<time> LEVEL name message`) or json, one object a line; request lines are JSON.
    log_format: str = "text"
    access_log: bool = True  # one JSON line per HTTP request (SLOTS_ACCESS_LOG=0: none)
    # Where `serve` keeps the workers' shared files (metrics, the draining mark); empty:
    # <tempdir>/slots-service-<port>. Only serve sets it for its workers.
    runtime_dir: str = ""
    # On SIGTERM: /readyz answers 503 this long before serving stops (at once when the preStop
    # `slots-service drain` did that already); then in-flight requests get
    # workers_kill_timeout seconds to finish before a worker is killed.
    drain_seconds: float = 5.0
    workers_kill_timeout: int = 10
    # The zone of instants that belong to no office (a person's block end).
    timezone: str = "Asia/Shanghai"
    api_keys: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)
    pii_key: Secret = field(default_factory=lambda: Secret(""))
    webhook_url: str = ""
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    test_clock: bool = False
    scheduler_in_process: bool = False
    db_pool_size: int = 20
    # Group commit (group_commit.py): plain bookings decided in one transaction, at most this
    # many in one, and this many batches in Postgres at a time per process.
    book_batch_max: int = 64
    book_batch_in_flight: int = 2
    # POST /v1/bookings answered by fast_booking.py (off: by the Litestar route alone).
    booking_fast_path: bool = True
    redis_timeout_s: float = 0.5
    # Run on a Redis whose maxmemory-policy may evict counters (warned, /readyz "evicting").
    redis_allow_eviction: bool = False
    # Policy defaults (API.md "Policy defaults"), each overridable by environment.
    horizon_first_day: int = 1
    horizon_days: int = 14
    horizon_opens_at: str = "00:00"
    active_bookings_per_service: int = 1
    bookings_per_day: int = 1
    one_phone_per_identity: bool = True
    no_show_grace_minutes: int = 30
    no_show_block_count: int = 3
    no_show_window_days: int = 180
    no_show_block_days: int = 180
    cancel_block_count: int = 3
    cancel_window_days: int = 30
    cancel_block_hours: int = 24
    reminder_time: str = "18:00"
    retention_days: int = 180
    idempotency_hours: int = 24
    # A claimed Idempotency-Key with no answer after this (its request died) may be taken over.
    idempotency_lease_s: int = 10
    check_in_early_minutes: int = 60
    # API 1.1: a booking moves to another window at most this often.
    max_reschedules: int = 3
    # API 1.1: no booking of a service this long after the person's own cancellation of it.
    rebook_cooldown_minutes: int = 0
    # API 1.1: a party of more than one must name its members.
    party_members_required: bool = False
    rate_limit_per_key_per_minute: int = 0
    rate_limit_per_person_per_minute: int = 60

    @property
    def idempotency_period(self) -> timedelta:
        return timedelta(hours=self.idempotency_hours)


_INT_POLICIES = {
    "horizon_first_day": "SLOTS_HORIZON_FIRST_DAY",
    "horizon_days": "SLOTS_HORIZON_DAYS",
    "active_bookings_per_service": "SLOTS_ACTIVE_BOOKINGS_PER_SERVICE",
    "bookings_per_day": "SLOTS_BOOKINGS_PER_DAY",
    "no_show_grace_minutes": "SLOTS_NO_SHOW_GRACE_MINUTES",
    "no_show_block_count": "SLOTS_NO_SHOW_BLOCK_COUNT",
    "no_show_window_days": "SLOTS_NO_SHOW_WINDOW_DAYS",
    "no_show_block_days": "SLOTS_NO_SHOW_BLOCK_DAYS",
    "cancel_block_count": "SLOTS_CANCEL_BLOCK_COUNT",
    "cancel_window_days": "SLOTS_CANCEL_WINDOW_DAYS",
    "cancel_block_hours": "SLOTS_CANCEL_BLOCK_HOURS",
    "retention_days": "SLOTS_RETENTION_DAYS",
    "idempotency_hours": "SLOTS_IDEMPOTENCY_HOURS",
    "idempotency_lease_s": "SLOTS_IDEMPOTENCY_LEASE_SECONDS",
    "check_in_early_minutes": "SLOTS_CHECK_IN_EARLY_MINUTES",
    "max_reschedules": "SLOTS_MAX_RESCHEDULES",
    "rebook_cooldown_minutes": "SLOTS_REBOOK_COOLDOWN_MINUTES",
    "rate_limit_per_key_per_minute": "SLOTS_RATE_LIMIT_PER_KEY",
    "rate_limit_per_person_per_minute": "SLOTS_RATE_LIMIT_PER_PERSON",
    "port": "SLOTS_PORT",
    "workers": "SLOTS_WORKERS",
    "metrics_port": "SLOTS_METRICS_PORT",
    "db_pool_size": "SLOTS_DB_POOL_SIZE",
    "book_batch_max": "SLOTS_BOOK_BATCH_MAX",
    "book_batch_in_flight": "SLOTS_BOOK_BATCH_IN_FLIGHT",
    "workers_kill_timeout": "SLOTS_WORKERS_KILL_TIMEOUT",
}

_TRUE = {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{name} must be between 0 and 3600")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return raw


def _hhmm(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    hh, _, mm = raw.partition(":")
    if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60 and len(mm) == 2):
        raise ConfigError(f"{name} must be HH:MM")
    return f"{int(hh):02d}:{mm}"


def environment() -> Mapping[str, str]:
    """The process environment, read-only (this module is the one place that reads it)."""
    return os.environ


def export(values: Mapping[str, str]) -> None:
    """Set variables for child processes (the API workers of `slots-service dev`)."""
    os.environ.update(values)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment once. `env` defaults to os.environ."""
    env = os.environ if env is None else env
    ints = {attr: _int(env, name, getattr(Settings, attr)) for attr, name in _INT_POLICIES.items()}
    for attr in ("db_pool_size", "book_batch_max", "book_batch_in_flight"):
        if ints[attr] < 1:
            raise ConfigError(f"{_INT_POLICIES[attr]} must be at least 1")
    pii = env.get("SLOTS_PII_KEY", "")
    if pii and len(pii) < 16:
        raise ConfigError("SLOTS_PII_KEY must be at least 16 characters")
    return Settings(
        database_url=normalise_database_url(env.get("DATABASE_URL", "")),
        redis_url=env.get("REDIS_URL", ""),
        host=env.get("SLOTS_HOST", Settings.host),
        log_level=env.get("SLOTS_LOG_LEVEL", Settings.log_level),
        log_format=_choice(env, "SLOTS_LOG_FORMAT", ("text", "json"), Settings.log_format),
        access_log=env.get("SLOTS_ACCESS_LOG", "1").lower() in _TRUE,
        runtime_dir=env.get("SLOTS_RUNTIME_DIR", Settings.runtime_dir),
        drain_seconds=_seconds(env, "SLOTS_DRAIN_SECONDS", Settings.drain_seconds),
        timezone=env.get("SLOTS_TIMEZONE", Settings.timezone),
        api_keys=parse_api_keys(env.get("SLOTS_API_KEYS", "")),
        pii_key=Secret(pii),
        webhook_url=env.get("SLOTS_WEBHOOK_URL", ""),
        webhook_secret=Secret(env.get("SLOTS_WEBHOOK_SECRET", "")),
        test_clock=env.get("SLOTS_TEST_CLOCK", "").lower() in _TRUE,
        scheduler_in_process=env.get("SLOTS_SCHEDULER_IN_PROCESS", "").lower() in _TRUE,
        redis_timeout_s=float(env.get("SLOTS_REDIS_TIMEOUT_S", Settings.redis_timeout_s)),
        redis_allow_eviction=env.get("SLOTS_REDIS_ALLOW_EVICTION", "").lower() in _TRUE,
        booking_fast_path=env.get("SLOTS_BOOKING_FAST_PATH", "1").lower() in _TRUE,
        horizon_opens_at=_hhmm(env, "SLOTS_HORIZON_OPENS_AT", Settings.horizon_opens_at),
        one_phone_per_identity=env.get("SLOTS_ONE_PHONE_PER_IDENTITY", "1").lower() in _TRUE,
        party_members_required=env.get("SLOTS_PARTY_MEMBERS_REQUIRED", "").lower() in _TRUE,
        reminder_time=_hhmm(env, "SLOTS_REMINDER_TIME", Settings.reminder_time),
        **ints,
    )
