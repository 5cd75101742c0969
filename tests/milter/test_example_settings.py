"""contrib/postwarden.example.yaml names every milter setting and loads as it is."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from postwarden_milter.settings import (
    SETTING_NAMES,
    FailAction,
    MilterSettings,
    SpoolFullAction,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "contrib" / "postwarden.example.yaml"
COMMENTED = re.compile(r"^# ([a-z_]+):", re.MULTILINE)  # a setting shown but commented out


def test_every_setting_is_documented() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    active = set(yaml.safe_load(text))
    commented = set(COMMENTED.findall(text))
    assert active | commented == set(SETTING_NAMES)
    assert not active & commented


def test_example_loads_through_the_settings_loader(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    values = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert values["milter_socket"] == "unix:/var/spool/postfix/postwarden/milter.sock"
    # The example's directories are system paths; the environment points them here.
    environ = {"POSTWARDEN_POLICY_DIR": str(tmp_path / "policies"),
               "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool"),
               "POSTWARDEN_MILTER_SOCKET": f"unix:{tmp_path}/milter.sock"}
    settings = load_settings(EXAMPLE, environ)
    assert settings.milter_socket_mode == 0o660
    assert settings.fail_action is FailAction.TEMPFAIL
    assert settings.spool_full_action is SpoolFullAction.TEMPFAIL
    assert settings.metrics_address == ("127.0.0.1", 9899)
    assert settings.database_url is None
    assert settings.instance_name  # "" in the example: the host name


def test_example_values_match_the_defaults() -> None:
    """Where the example differs from a default, it is on purpose and listed here."""
    values = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    # System paths, metrics on, the socket in Postfix's chroot; the mode is text in YAML.
    chosen = {"policy_dir", "spool_dir", "metrics_listen", "milter_socket", "milter_socket_mode"}
    defaults = MilterSettings()
    assert "fail_action" in set(values) - chosen  # the loop below checks a real file's values
    for name in set(values) - chosen:
        assert values[name] == getattr(defaults, name), name
