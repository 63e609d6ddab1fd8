"""Settings from the environment: keys, scopes, policies, secrets never shown."""

import pytest

from slots_service.config import ConfigError, load_settings, parse_api_keys


def test_api_keys_parse_with_scopes() -> None:
    keys = parse_api_keys("a=admin,bookings:read; b=checkin;")
    assert keys == {"a": frozenset({"admin", "bookings:read"}), "b": frozenset({"checkin"})}


@pytest.mark.parametrize("bad", ["nokey", "=admin", "a=root"])
def test_bad_api_keys_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_api_keys(bad)


def test_policy_defaults_match_the_published_rules() -> None:
    s = load_settings({})
    assert (s.horizon_first_day, s.horizon_days, s.horizon_opens_at) == (1, 14, "00:00")
    assert (s.active_bookings_per_service, s.bookings_per_day) == (1, 1)
    assert s.one_phone_per_identity
    assert (s.no_show_grace_minutes, s.no_show_block_count) == (30, 3)
    assert (s.no_show_window_days, s.no_show_block_days) == (180, 180)
    assert (s.cancel_block_count, s.cancel_window_days, s.cancel_block_hours) == (3, 30, 24)
    assert (s.reminder_time, s.retention_days) == ("18:00", 180)


def test_policies_are_overridable() -> None:
    s = load_settings({"SLOTS_BOOKINGS_PER_DAY": "2", "SLOTS_REMINDER_TIME": "19:30"})
    assert s.bookings_per_day == 2
    assert s.reminder_time == "19:30"
    with pytest.raises(ConfigError):
        load_settings({"SLOTS_BOOKINGS_PER_DAY": "two"})


def test_postgres_scheme_is_accepted() -> None:
    s = load_settings({"DATABASE_URL": "postgres://u@h/db"})
    assert s.database_url == "postgresql://u@h/db"


def test_secrets_never_show() -> None:
    s = load_settings({"SLOTS_PII_KEY": "super-secret-pii-key", "SLOTS_API_KEYS": "sekrit=admin"})
    text = repr(s) + str(s.pii_key)
    assert "super-secret" not in text
    assert "sekrit" not in text
    assert s.pii_key.get() == "super-secret-pii-key"
