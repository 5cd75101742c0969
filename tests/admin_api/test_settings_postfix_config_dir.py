"""postfix_config_dir: the Postfix instance whose queue the relay asks (send/interrupted.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_admin_api.settings import load_settings
from postwarden_policies.settings_source import SettingsError

DATABASE = {"POSTWARDEN_DATABASE_URL": "postgresql://u@127.0.0.1/db"}


def test_a_postfix_config_directory_is_taken(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("queue_directory = /var/spool/postfix\n")
    settings = load_settings(None, {**DATABASE, "POSTWARDEN_MAILLOG_PATH": "/var/log/postfix.log",
                                    "POSTWARDEN_POSTFIX_CONFIG_DIR": str(tmp_path)})
    assert settings.postfix_config_dir == tmp_path
    assert load_settings(None, DATABASE).postfix_config_dir is None  # unset: not asked


def test_a_directory_without_main_cf_is_refused_where_it_was_set(tmp_path: Path) -> None:
    config = tmp_path / "admin.yaml"
    config.write_text(f"maillog_path: /var/log/postfix.log\npostfix_config_dir: {tmp_path}\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(config, DATABASE)
    assert refused.value.problems == [
        f"{config}:2: postfix_config_dir: {str(tmp_path)!r} holds no main.cf (expected a Postfix "
        "config directory)"]


@pytest.mark.parametrize("unset", ["POSTWARDEN_MAILLOG_PATH", "POSTWARDEN_RELAY_HOST"])
def test_it_needs_the_log_and_the_relay(tmp_path: Path, unset: str) -> None:
    """Its queue is asked only about an interrupted attempt the log follower read of."""
    (tmp_path / "main.cf").write_text("")
    environ = {**DATABASE, "POSTWARDEN_MAILLOG_PATH": "/var/log/postfix.log",
               "POSTWARDEN_POSTFIX_CONFIG_DIR": str(tmp_path), unset: ""}
    if unset == "POSTWARDEN_MAILLOG_PATH":
        del environ[unset]
    with pytest.raises(SettingsError) as refused:
        load_settings(None, environ)
    assert refused.value.problems == [
        "POSTWARDEN_POSTFIX_CONFIG_DIR: postfix_config_dir: needs maillog_path and relay_host"]
