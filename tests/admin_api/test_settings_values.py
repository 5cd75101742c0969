"""The admin service refuses, as the milter does (settings_source.given_value), what no
setting takes: no value, an empty one, a list or number where text belongs, white space
at a value's ends, a control character. Each stops `serve` with exit 2 before anything
opens, naming the file and line or the variable and the setting, never a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postwarden_admin_api.settings import load_settings
from postwarden_policies.settings_source import SettingsError
from tests.fixtures.ports import free_port

PASSWORD = "s3cret-pw"
DATABASE_URL = f"postgresql://postwarden:{PASSWORD}@127.0.0.1:{free_port()}/pw"


def _serve(tmp_path: Path, text: str, **variables: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "admin.yaml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= variables
    return subprocess.run([sys.executable, "-m", "postwarden_admin_api", "serve",
                           "--config", str(config)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("line", "told"), [
    ("relay_host:", "2: relay_host: no value (remove the line for the default)"),
    ("listen:", "2: listen: no value (remove the line for the default)"),  # a traceback
    ("relay_host: [a]", "2: relay_host: expected text, got a list"),  # was "['a']"
    ("maillog_host: 5", "2: maillog_host: expected text, got a number (quote it)"),
    ("maillog_path: [/var/log/mail.log]", "2: maillog_path: expected text, got a list"),
    ("relay_host: ' 127.0.0.1'", "2: relay_host: starts or ends with white space (a space, "
                                 "tab or newline): remove it"),
    ('maillog_path: "/var/log/mail.log\\0"', "2: maillog_path: holds the control character "
                                             "U+0000"),
    ('secret_key_file: "/etc/k\\0"', "2: secret_key_file: holds the control character "
                                     "U+0000"),  # "embedded null byte", a traceback
    ("development_key:", "2: development_key: no value (remove the line for the default)"),
])
def test_a_value_no_setting_takes_is_refused_from_the_file(
        tmp_path: Path, line: str, told: str) -> None:
    listen = "" if line.startswith("listen") else f"listen: 127.0.0.1:{free_port()}\n"
    done = _serve(tmp_path, f"database_url: {DATABASE_URL}\n{line}\n{listen}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["postwarden-admin: invalid settings:",
                                        f"  {tmp_path / 'admin.yaml'}:{told}"]


@pytest.mark.parametrize(("name", "value", "told"), [
    # A stray newline kept: the database "pw\n" (and a password in no message).
    ("DATABASE_URL", DATABASE_URL + "\n", "database_url: starts or ends with white space "
                                          "(a space, tab or newline): remove it"),
    ("DATABASE_URL", DATABASE_URL + "\x01", "database_url: holds the control character "
                                            "U+0001"),
    ("LISTEN", "127.0.0.1:8025 ", "listen: starts or ends with white space (a space, tab or "
                                  "newline): remove it"),
    ("DEVELOPMENT_KEY", " true", "development_key: starts or ends with white space (a "
                                 "space, tab or newline): remove it"),
    ("RELAY_PORT", "", "relay_port: empty (leave it unset for the default)"),
    ("LOG_LEVEL", "", "log_level: empty (leave it unset for the default)"),
    ("DEVELOPMENT_KEY", "", "development_key: empty (leave it unset for the default)"),
])
def test_a_value_no_setting_takes_is_refused_from_a_variable(
        tmp_path: Path, name: str, value: str, told: str) -> None:
    variable = f"POSTWARDEN_{name}"
    given = {"POSTWARDEN_DATABASE_URL": DATABASE_URL,
             "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}"} | {variable: value}
    done = _serve(tmp_path, "", **given)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["postwarden-admin: invalid settings:",
                                        f"  {variable}: {told}"]
    assert PASSWORD not in done.stderr


def test_an_empty_optional_setting_is_unset(tmp_path: Path) -> None:
    """maillog_path= was the working directory, secret_key_file= "cannot read .": as
    unset; given relay_host= keeps its meaning (no relay)."""
    environ = {"POSTWARDEN_DATABASE_URL": DATABASE_URL, "POSTWARDEN_MAILLOG_PATH": "",
               "POSTWARDEN_SECRET_KEY_FILE": "", "POSTWARDEN_MAILLOG_HOST": "",
               "POSTWARDEN_RELAY_HOST": "", "POSTWARDEN_MAILLOG_SYSLOG_NAME": ""}
    settings = load_settings(None, environ)
    assert (settings.maillog_path, settings.secret_key_file, settings.maillog_host,
            settings.maillog_syslog_name, settings.relay_host) == (None, None, None, None, "")


def test_a_number_that_rounds_to_zero_is_refused(tmp_path: Path) -> None:
    """1e-400 read as 0: refused, but as "must be more than 0", which it is."""
    done = _serve(tmp_path, f"database_url: {DATABASE_URL}\nrelay_backoff_seconds: 1e-400\n",
                  POSTWARDEN_LISTEN=f"127.0.0.1:{free_port()}",
                  POSTWARDEN_WEBHOOK_TIMEOUT_SECONDS="0.1e-999")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "postwarden-admin: invalid settings:",
        f"  {tmp_path / 'admin.yaml'}:2: relay_backoff_seconds: '1e-400' is too small "
        "(it rounds to 0)",  # told with the environment's
        "  POSTWARDEN_WEBHOOK_TIMEOUT_SECONDS: webhook_timeout_seconds: '0.1e-999' is too "
        "small (it rounds to 0)"]
    done = _serve(tmp_path, "", POSTWARDEN_DATABASE_URL=DATABASE_URL,
                  POSTWARDEN_LISTEN=f"127.0.0.1:{free_port()}",
                  POSTWARDEN_WEBHOOK_TIMEOUT_SECONDS="0.1e-999")
    assert done.stderr.splitlines()[1:] == [
        "  POSTWARDEN_WEBHOOK_TIMEOUT_SECONDS: webhook_timeout_seconds: '0.1e-999' is too "
        "small (it rounds to 0)"]


@pytest.mark.parametrize(("name", "value", "told"), [
    # Taken as 8025, and policy push made it a URL that is none.
    ("LISTEN", "127.0.0.1:\u0668\u0660\u0662\u0665", "listen: expected HOST:PORT"),
    # Quoted whole: a huge variable made as huge a line in the journal.
    ("WEBHOOK_ALLOWED_NETWORKS", "x" * 100_000,
     f"webhook_allowed_networks: {'x' * 80!r}... (100000 characters) is not a network"),
])
def test_a_refused_value_is_told_as_the_milter_tells_it(
        tmp_path: Path, name: str, value: str, told: str) -> None:
    given = {"POSTWARDEN_DATABASE_URL": DATABASE_URL,
             "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}"} | {f"POSTWARDEN_{name}": value}
    done = _serve(tmp_path, "", **given)
    assert done.returncode == 2, done.stderr[:300]
    assert done.stderr.splitlines() == ["postwarden-admin: invalid settings:",
                                        f"  POSTWARDEN_{name}: {told}"]


@pytest.mark.parametrize(("line", "told"), [
    ("listen:", "listen: no value (remove the line for the default)"),  # http://None
    ("listen: ' 127.0.0.1:8025'", "listen: starts or ends with white space (a space, tab or "
                                  "newline): remove it"),  # "host  127.0.0.1"
    ("listen: [a]", "listen: expected text, got a list"),  # "--url: expected ...", unused
])
def test_policy_push_checks_the_listen_it_pushes_to(
        tmp_path: Path, line: str, told: str) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "main.yaml").write_text("version: 1\nname: m\n")
    config = tmp_path / "admin.yaml"
    config.write_text(line + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    done = subprocess.run([sys.executable, "-m", "postwarden_admin_api", "--config",
                           str(config), "policy", "push", str(policies)],
                          env=env | {"POSTWARDEN_API_KEY": "k"}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["postwarden-admin: invalid settings:",
                                        f"  {config}:1: {told}"]


@pytest.mark.parametrize("before", [True, False])
def test_an_empty_config_path_is_refused_not_read_as_the_working_directory(
        before: bool) -> None:
    """--config "" (a variable expanded unset) was ".: cannot read settings file: Is a
    directory", as the milter's was."""
    given = ["--config", ""]
    done = subprocess.run([sys.executable, "-m", "postwarden_admin_api",
                           *([*given, "serve"] if before else ["serve", *given])],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(
        "argument --config: empty: name the settings file, or leave --config out for none")


LONG_PATH = "/srv/" + "d" * 4000 + "/secret.key"
CUT_PATH = f"{LONG_PATH[:80]!r}... ({len(LONG_PATH)} characters)"


@pytest.mark.parametrize(("variables", "told"), [
    ({"POSTWARDEN_SECRET_KEY_FILE": LONG_PATH},
     f"POSTWARDEN_SECRET_KEY_FILE: secret_key_file: cannot read {CUT_PATH}: "
     "File name too long"),
    ({"POSTWARDEN_MAILLOG_PATH": "/var/log/mail.log", "POSTWARDEN_RELAY_HOST": "127.0.0.1",
      "POSTWARDEN_POSTFIX_CONFIG_DIR": LONG_PATH},
     f"POSTWARDEN_POSTFIX_CONFIG_DIR: postfix_config_dir: {CUT_PATH} holds no main.cf "
     "(expected a Postfix config directory)"),
])
def test_a_long_path_is_cut_as_other_values_are(variables: dict[str, str], told: str) -> None:
    """A path 4 KB long was echoed whole, where other values are cut to 80 characters."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {"POSTWARDEN_DATABASE_URL": DATABASE_URL, **variables})
    assert refused.value.problems == [told]


def test_a_setting_given_twice_is_told_as_that_alone(tmp_path: Path) -> None:
    """The admin service reads its file as the milter does (settings_source): the first
    of two values, which YAML does not keep, was checked and told beside the duplicate."""
    done = _serve(tmp_path, f"database_url: {DATABASE_URL}\nlisten: nowhere\n"
                            f"listen: 127.0.0.1:{free_port()}\n")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "postwarden-admin: invalid settings:",
        f"  {tmp_path / 'admin.yaml'}:3: 'listen' set twice (first at line 2)"]


def test_a_missing_database_url_is_told_with_the_files_other_problems(tmp_path: Path) -> None:
    """database_url missing was told alone, as a value refused hid the checks of the
    others: an admin fixing the file met one problem per start, where the milter tells
    them all at once."""
    done = _serve(tmp_path, "relay_port: many\nlisten: nowhere\npool_min_size: 0\n")
    assert done.returncode == 2, done.stderr
    config = tmp_path / "admin.yaml"
    assert done.stderr.splitlines() == [
        "postwarden-admin: invalid settings:",
        "  database_url: required (or set POSTWARDEN_DATABASE_URL)",
        f"  {config}:1: relay_port: 'many' is not a number",
        f"  {config}:2: listen: expected HOST:PORT",
        f"  {config}:3: pool_min_size: must be at least 1"]


def test_a_database_url_given_twice_is_not_told_as_missing(tmp_path: Path) -> None:
    done = _serve(tmp_path, f"database_url: {DATABASE_URL}\ndatabase_url: {DATABASE_URL}\n"
                            f"listen: 127.0.0.1:{free_port()}\n")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "postwarden-admin: invalid settings:",
        f"  {tmp_path / 'admin.yaml'}:2: 'database_url' set twice (first at line 1)"]
