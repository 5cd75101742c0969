"""contrib/postwarden-admin.example.yaml names every admin setting and loads as it is."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from postwarden_admin_api.settings import FIELDS, ServiceSettings, load_settings
from postwarden_policies.settings_source import Secret

EXAMPLE = Path(__file__).resolve().parents[2] / "contrib" / "postwarden-admin.example.yaml"
# A setting shown but left commented out: "# name: value" at the start of a line.
COMMENTED = re.compile(r"^# ([a-z_]+):", re.MULTILINE)
DATABASE_URL = "postgresql://postwarden@127.0.0.1/postwarden"


def test_every_setting_is_documented() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    active = set(yaml.safe_load(text))
    commented = set(COMMENTED.findall(text))
    assert active | commented == set(FIELDS)
    assert not active & commented


def test_example_loads_through_the_settings_loader(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("ab" * 32 + "\n", encoding="utf-8")
    # The commented-out database URL and the key file's path come from the environment.
    environ = {"POSTWARDEN_DATABASE_URL": DATABASE_URL,
               "POSTWARDEN_SECRET_KEY_FILE": str(key_file)}
    settings = load_settings(EXAMPLE, environ)
    assert settings.database_url.reveal() == DATABASE_URL
    assert settings.secret_key == Secret("ab" * 32)
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8025)
    assert (settings.relay_host, settings.relay_port) == ("127.0.0.1", 10026)
    assert settings.maillog_path is None and settings.maillog_host is None
    assert settings.webhook_allowed_networks == ()


def test_example_values_are_the_defaults() -> None:
    """The example shows the defaults, so a changed default must change the example too."""
    values = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    defaults = ServiceSettings(database_url=Secret(DATABASE_URL))
    assert "relay_workers" in values  # the loop below checks a real file's values
    for name, value in values.items():
        if name == "secret_key_file":
            continue  # no default: the example names the conventional place
        shown = tuple(value) if isinstance(value, list) else value
        assert shown == getattr(defaults, name), name
