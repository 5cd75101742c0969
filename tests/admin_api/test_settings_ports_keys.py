"""Admin settings that used to pass at start and fail later: a relay port above 65535
(the relay loop then met OverflowError each round while the API answered 202), a
relay_host holding a port, a binary secret key file (an uncaught UnicodeDecodeError)
and a malformed previous key (told without the setting). Each is now told at start as
``FILE:LINE: setting: problem``, never quoting a key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postwarden_admin_api.settings import load_settings
from postwarden_policies.settings_source import SettingsError

DATABASE_URL = "postgresql://postwarden@127.0.0.1:1/postwarden"
KEY_PROBLEM = "expected 32 bytes as 64 hex digits or base64 (openssl rand -hex 32)"
BINARY_KEY = bytes(range(200, 232))  # 32 bytes, not UTF-8: `openssl rand 32 > secret.key`
SHORT_KEY = "abc123"


def _problems(config: Path | None = None, **variables: str) -> list[str]:
    environ = {"POSTWARDEN_DATABASE_URL": DATABASE_URL} | {
        f"POSTWARDEN_{name.upper()}": value for name, value in variables.items()}
    with pytest.raises(SettingsError) as refused:
        load_settings(config, environ)
    return refused.value.problems


@pytest.mark.parametrize(("port", "problem"), [
    pytest.param("0", "must be at least 1", id="0"),
    pytest.param("65536", "must be at most 65535", id="65536"),
    pytest.param("100026", "must be at most 65535", id="100026"),
])
def test_a_relay_port_out_of_range_is_refused(port: str, problem: str) -> None:
    assert _problems(relay_port=port) == [f"POSTWARDEN_RELAY_PORT: relay_port: {problem}"]


@pytest.mark.parametrize("port", [1, 65535])
def test_relay_ports_at_the_bounds_are_taken(port: int) -> None:
    environ = {"POSTWARDEN_DATABASE_URL": DATABASE_URL, "POSTWARDEN_RELAY_PORT": str(port)}
    assert load_settings(None, environ).relay_port == port


@pytest.mark.parametrize("host", [
    pytest.param("127.0.0.1:10026", id="address-and-port"),
    pytest.param("mail.example:25", id="name-and-port"),
    pytest.param("[::1]", id="bracketed"),
    pytest.param("[::1]:25", id="bracketed-and-port"),
    pytest.param("smtp://mail.example", id="url"),
    pytest.param("mail example", id="space"),
])
def test_a_relay_host_with_a_port_or_more_is_refused(tmp_path: Path, host: str) -> None:
    config = tmp_path / "admin.yaml"
    config.write_text(f"listen: 127.0.0.1:8025\nrelay_host: '{host}'\n", encoding="utf-8")
    assert _problems(config) == [
        f"{config}:2: relay_host: expected a host name or IP address without a port "
        "(the port goes in relay_port)"]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "fe80::1%eth0", "mail.example", ""])
def test_relay_hosts_asyncio_connects_to_are_taken(host: str) -> None:
    environ = {"POSTWARDEN_DATABASE_URL": DATABASE_URL, "POSTWARDEN_RELAY_HOST": host}
    assert load_settings(None, environ).relay_host == host


def _config_with_keys(tmp_path: Path, current: bytes, previous: bytes) -> Path:
    (tmp_path / "secret.key").write_bytes(current)
    (tmp_path / "secret.key.old").write_bytes(previous)
    config = tmp_path / "admin.yaml"
    config.write_text(f"listen: 127.0.0.1:8025\nsecret_key_file: {tmp_path / 'secret.key'}\n"
                      f"previous_secret_key_file: {tmp_path / 'secret.key.old'}\n",
                      encoding="utf-8")
    return config


def test_bad_key_files_are_told_with_file_line_and_setting(tmp_path: Path) -> None:
    config = _config_with_keys(tmp_path, BINARY_KEY, SHORT_KEY.encode())
    assert _problems(config) == [
        f"{config}:2: secret_key_file: {str(tmp_path / 'secret.key')!r} is not text: "
        f"{KEY_PROBLEM}",
        f"{config}:3: previous_secret_key_file: {str(tmp_path / 'secret.key.old')!r}: "
        f"{KEY_PROBLEM}",
    ]


def test_a_bad_key_in_a_variable_is_told_without_the_key() -> None:
    problems = _problems(secret_key=SHORT_KEY, previous_secret_key="zz" * 32)
    assert problems == [f"POSTWARDEN_SECRET_KEY: secret_key: {KEY_PROBLEM}",
                        f"POSTWARDEN_PREVIOUS_SECRET_KEY: previous_secret_key: {KEY_PROBLEM}"]


def test_good_key_files_load(tmp_path: Path) -> None:
    config = _config_with_keys(tmp_path, b"ab" * 32 + b"\n", b"cd" * 32)
    settings = load_settings(config, {"POSTWARDEN_DATABASE_URL": DATABASE_URL})
    assert settings.secret_key is not None and settings.previous_secret_key is not None
    assert (settings.secret_key.reveal(), settings.previous_secret_key.reveal()) == (
        "ab" * 32, "cd" * 32)


def _admin(argv: list[str], **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {"POSTWARDEN_DATABASE_URL": DATABASE_URL} | variables
    return subprocess.run([sys.executable, "-m", "postwarden_admin_api", *argv], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


# migrate and keys read no key file (test_cli.py::test_migrate_and_keys_run_without_...).
@pytest.mark.parametrize("argv", [["serve"], ["secrets", "rotate", "--new-key-file", "k"]])
def test_the_cli_refuses_a_binary_key_file_in_one_problem(tmp_path: Path,
                                                          argv: list[str]) -> None:
    config = _config_with_keys(tmp_path, BINARY_KEY, b"cd" * 32)
    done = _admin(["--config", str(config), *argv])
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "postwarden-admin: invalid settings:",
        f"  {config}:2: secret_key_file: {str(tmp_path / 'secret.key')!r} is not text: "
        f"{KEY_PROBLEM}"]


def test_secrets_rotate_names_a_bad_new_key_file(tmp_path: Path) -> None:
    new_key = tmp_path / "new.key"
    new_key.write_bytes(BINARY_KEY)
    done = _admin(["secrets", "rotate", "--new-key-file", str(new_key)],
                  POSTWARDEN_SECRET_KEY="ab" * 32)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [f"postwarden-admin: --new-key-file {new_key}: "
                                        f"{KEY_PROBLEM}"]
