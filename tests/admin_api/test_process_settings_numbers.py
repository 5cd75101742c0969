"""The admin service's numeric process settings are read as strictly as the milter's:
whole numbers for integer settings, finite and positive intervals and timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_admin_api.settings import load_settings
from postwarden_policies.settings_source import SettingsError

DATABASE = "database_url: postgresql://u@127.0.0.1/db\n"


@pytest.mark.parametrize(("line", "problem"), [
    ("relay_workers: 2.5", "relay_workers: 2.5 is not a whole number"),  # was read as 2
    ("requests_per_minute: true", "requests_per_minute: True is not a number"),
    ("retention_interval_seconds: .nan", "retention_interval_seconds: nan is not a finite number"),
    ("webhook_timeout_seconds: .inf", "webhook_timeout_seconds: inf is not a finite number"),
    ("relay_backoff_seconds: yes", "relay_backoff_seconds: 'yes' is not a number"),
    ("webhook_timeout_seconds: -1", "webhook_timeout_seconds: must be more than 0"),
    ("retention_interval_seconds: 0", "retention_interval_seconds: must be more than 0"),
    ("relay_backoff_seconds: 0", "relay_backoff_seconds: must be more than 0"),
    ("pool_min_size: 20", "pool_min_size: must not exceed pool_max_size"),
    # Past an integer column's range every authenticated request was a 500.
    ("requests_per_minute: 2147483648", "requests_per_minute: must be at most 2147483647"),
    ("auth_failures_per_minute: 1e10", "auth_failures_per_minute: must be at most 2147483647"),
    ("webhook_max_attempts: 2147483648", "webhook_max_attempts: must be at most 2147483647"),
    ("webhook_history_days: 1000000000", "webhook_history_days: must be at most 36500"),
    ("relay_max_attempts: 2147483648", "relay_max_attempts: must be at most 2147483647"),
    # A connection holder or a relay task each, made at start: a billion filled memory.
    ("pool_max_size: 1000000000", "pool_max_size: must be at most 1000"),
    ("relay_workers: 1000000000", "relay_workers: must be at most 1000"),
    ("webhook_timeout_seconds: 1e300", "webhook_timeout_seconds: must be at most 3600"),
])
def test_a_number_that_cannot_work_is_refused_at_its_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    config = tmp_path / "admin.yaml"
    config.write_text(DATABASE + line + "\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config, {})
    assert info.value.problems == [f"{config}:2: {problem}"]


def test_whole_numbers_in_any_spelling_are_taken(tmp_path: Path) -> None:
    config = tmp_path / "admin.yaml"
    config.write_text(DATABASE + "relay_workers: 4.0\nrelay_backoff_seconds: 0.5\n")
    settings = load_settings(config, {"POSTWARDEN_POOL_MAX_SIZE": "12"})
    assert (settings.relay_workers, settings.relay_backoff_seconds) == (4, 0.5)
    assert settings.pool_max_size == 12


def test_a_whole_number_past_a_floats_precision_is_taken_exactly() -> None:
    settings = load_settings(None, {"POSTWARDEN_DATABASE_URL": "postgresql://u@127.0.0.1/db",
                                    "POSTWARDEN_MAX_REQUEST_BODY_BYTES": "9007199254740993"})
    assert settings.max_request_body_bytes == 2**53 + 1  # through a float: 2**53
