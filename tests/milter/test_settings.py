"""Milter settings: file plus environment, every value checked before start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postwarden_milter import settings as settings_module
from postwarden_milter.settings import (
    FailAction,
    Secret,
    SettingsError,
    SpoolFullAction,
    load_settings,
    stray_variables,
)


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    return {
        "POSTWARDEN_POLICY_DIR": str(policy_dir),
        "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool"),
    }


def test_defaults_from_environment_only(base_env: dict[str, str], tmp_path: Path) -> None:
    settings = load_settings(None, base_env)
    assert settings.milter_socket == "inet:8899@127.0.0.1"
    assert settings.fail_action is FailAction.TEMPFAIL
    assert settings.spool_full_action is SpoolFullAction.TEMPFAIL
    assert settings.id_header == "X-Postwarden-Id"
    assert settings.metrics_address is None
    assert settings.instance_name  # the host name
    assert (tmp_path / "spool").is_dir()  # created


def test_environment_wins_over_file(base_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "postwarden.yaml"
    config.write_text(
        "milter_socket: inet:9000@127.0.0.1\nfail_action: reject\nmax_concurrency: 8\n"
        "database_url: postgresql://u:hunter2@127.0.0.1/db\n"
    )
    env = {**base_env, "POSTWARDEN_FAIL_ACTION": "accept", "POSTWARDEN_METRICS_LISTEN":
           "127.0.0.1:9899", "POSTWARDEN_ID_HEADER": ""}
    settings = load_settings(config, env)
    assert settings.milter_socket == "inet:9000@127.0.0.1"
    assert settings.fail_action is FailAction.ACCEPT
    assert settings.max_concurrency == 8
    assert settings.metrics_address == ("127.0.0.1", 9899)
    assert settings.id_header == ""
    assert isinstance(settings.database_url, Secret)
    assert "hunter2" not in repr(settings)
    assert settings.database_url.reveal().endswith("/db")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param("MILTER_SOCKET", "tcp:99", "milter_socket", id="socket-syntax"),
        pytest.param("MILTER_SOCKET", "inet:70000@127.0.0.1", "out of range", id="socket-port"),
        pytest.param("MILTER_SOCKET", "unix:/nonexistent/dir/sock", "does not exist",
                     id="socket-dir"),
        pytest.param("MILTER_SOCKET_MODE", "0999", "octal mode", id="socket-mode-digits"),
        pytest.param("MILTER_SOCKET_MODE", "rw-rw----", "octal mode", id="socket-mode-text"),
        pytest.param("FAIL_ACTION", "bounce", "fail_action", id="fail-action"),
        pytest.param("SPOOL_FULL_ACTION", "panic", "spool_full_action", id="spool-full"),
        pytest.param("METRICS_LISTEN", "9899", "metrics_listen", id="metrics-listen"),
        pytest.param("MAX_CONCURRENCY", "0", "max_concurrency", id="concurrency-zero"),
        pytest.param("PROCESSES", "0", "processes: must be > 0", id="processes-zero"),
        pytest.param("PROCESSES", "65", "processes: at most 64", id="processes-many"),
        pytest.param("PROCESSES", "two", "processes: 'two' is not a number", id="processes-text"),
        pytest.param("MESSAGE_TIMEOUT_SECONDS", "soon", "not a number", id="timeout-text"),
        pytest.param("ID_HEADER", "X Bad: Header", "id_header", id="header-name"),
        pytest.param("LOG_LEVEL", "chatty", "log_level", id="log-level"),
        pytest.param("POLICY_DIR", "/nonexistent/policies", "not a directory", id="policy-dir"),
        pytest.param("BODY_MEMORY_THRESHOLD", "0", "body_memory_threshold: must be > 0, got '0'",
                     id="threshold-zero"),
        pytest.param("BODY_MEMORY_THRESHOLD", "4MB",
                     "body_memory_threshold: '4MB' is not a number", id="threshold-unit"),
        pytest.param("BODY_MEMORY_THRESHOLD", "1.5",
                     "body_memory_threshold: '1.5' is not a whole number", id="threshold-fraction"),
        pytest.param("POLICY_POLL_SECONDS", "-1", "policy_poll_seconds: must be >= 0, got '-1'",
                     id="poll-negative"),
        pytest.param("POLICY_POLL_SECONDS", "often", "policy_poll_seconds: 'often' is not a number",
                     id="poll-text"),
    ],
)
def test_invalid_values_name_the_setting(
    base_env: dict[str, str], name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(None, {**base_env, f"POSTWARDEN_{name}": value})


@pytest.mark.parametrize(
    ("line", "mode"),
    [
        pytest.param("milter_socket_mode: '0640'", 0o640, id="quoted"),
        pytest.param("milter_socket_mode: '640'", 0o640, id="three-digits"),
        pytest.param("", 0o660, id="default"),
    ],
)
def test_socket_mode_from_file(base_env: dict[str, str], tmp_path: Path, line: str,
                               mode: int) -> None:
    config = tmp_path / "postwarden.yaml"
    config.write_text(line + "\n")
    assert load_settings(config, base_env).milter_socket_mode == mode


@pytest.mark.parametrize("value", ["0660", "660"])
def test_unquoted_socket_mode_is_refused(base_env: dict[str, str], tmp_path: Path,
                                         value: str) -> None:
    config = tmp_path / "postwarden.yaml"
    config.write_text(f"milter_socket_mode: {value}\n")  # YAML: octal 432, or decimal 660
    with pytest.raises(SettingsError, match="quote it"):
        load_settings(config, base_env)


def test_unknown_key_in_file_is_refused(base_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "postwarden.yaml"
    config.write_text("fail_acton: accept\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(config, base_env)


def test_a_policy_source_is_required(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="policy_dir"):
        load_settings(None, {"POSTWARDEN_SPOOL_DIR": str(tmp_path)})


def test_invalid_settings_exit_2_each_told_with_where_it_was_set(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "postwarden.yaml"
    config.write_text("instance_name: mx1\n\nmax_concurrency: -3\n")
    env = {**base_env, "POSTWARDEN_FAIL_ACTION": "bounce", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "postwarden_milter", "--config", str(config)], env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "postwarden-milter: invalid settings:",
        f"  {config}:3: max_concurrency: must be > 0, got -3",
        "  POSTWARDEN_FAIL_ACTION: fail_action: 'bounce' is not one of "
        "tempfail | accept | reject",
    ]


def problems_of(config: Path, text: str, env: dict[str, str]) -> list[str]:
    """The problems load_settings finds with ``text`` as the settings file."""
    config.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(config, env)
    return info.value.problems


def test_a_milter_wide_bound_below_processes_is_refused_naming_both(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    # Each worker gets a share: given one each, 4 workers held 4 transactions where
    # max_concurrency said 2.
    config = tmp_path / "postwarden.yaml"
    assert problems_of(config, "processes: 4\nmax_concurrency: 2\n", base_env) == [
        f"{config}:2: max_concurrency: 2 is below processes (4): each worker process needs "
        "at least one; raise max_concurrency or lower processes"]
    assert load_settings(config, {**base_env, "POSTWARDEN_MAX_CONCURRENCY": "4"}
                         ).max_concurrency == 4


@pytest.mark.parametrize(("name", "least", "below", "off"), [
    # 0.0000001 was taken: every message past the inline size got fail_action, for ever.
    ("message_timeout_seconds", "1", "0.0000001", ""),
    ("duplicate_window_seconds", "1", "0.5", " (0 turns detection off)"),
    ("policy_poll_seconds", "0.1", "0.01", " (0 turns polling off)"),
    ("body_memory_threshold", "1024", "1", ""),
    ("spool_max_bytes", "1048576", "1048575", ""),
    ("audit_queue_size", "100", "99", ""),
])
def test_a_value_below_a_settings_least_is_refused_naming_the_bound(
    base_env: dict[str, str], name: str, least: str, below: str, off: str
) -> None:
    variable = f"POSTWARDEN_{name.upper()}"
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, variable: below})
    assert refused.value.problems == [f"{variable}: {name}: at least {least}{off}, got '{below}'"]
    assert getattr(load_settings(None, {**base_env, variable: least}), name) == float(least)
    if off:  # 0 still turns it off
        assert getattr(load_settings(None, {**base_env, variable: "0"}), name) == 0


def test_every_unknown_key_is_named_with_its_line(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "postwarden.yaml"
    text = "fail_action: accept\nfail_acton: accept\n# note\nspool-dir: /x\nsocket: x\n"
    assert problems_of(config, text, base_env) == [
        f"{config}:2: unknown setting 'fail_acton' (did you mean fail_action?)",
        f"{config}:4: unknown setting 'spool-dir' (did you mean spool_dir?)",
        f"{config}:5: unknown setting 'socket'"]  # like no setting enough to name one


def test_the_files_keys_are_told_with_the_values_and_the_directories(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """An unknown key was refused before any value was read: fixing the file, the admin
    met one problem per start."""
    config, missing = tmp_path / "postwarden.yaml", tmp_path / "nowhere"
    env = {"POSTWARDEN_FAIL_ACTION": "bounce", "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool")}
    text = (f"fail_acton: accept\nprocesses: 0\n# policies\n"
            f"policy_dir: {missing}\nfail_acton: reject\nmax_concurrency: 1e-400\n"
            "audit_queue_size: !!timestamp soon\n")
    assert problems_of(config, text, env) == [
        f"{config}:1: unknown setting 'fail_acton' (did you mean fail_action?)",
        f"{config}:5: 'fail_acton' set twice (first at line 1)",
        f"{config}:6: max_concurrency: '1e-400' is too small (it rounds to 0)",
        f"{config}:7:19: audit_queue_size: YAML syntax error: expected a timestamp",
        f"{config}:2: processes: must be > 0, got 0",
        "POSTWARDEN_FAIL_ACTION: fail_action: 'bounce' is not one of tempfail | accept | reject",
        f"{config}:4: policy_dir: {str(missing)!r} is not a directory"]
    assert not (tmp_path / "spool").exists()  # a start refused makes nothing


def test_a_directory_that_will_not_do_is_named_with_where_it_was_set(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    config, missing = tmp_path / "postwarden.yaml", tmp_path / "nowhere"
    env = {k: v for k, v in base_env.items() if k != "POSTWARDEN_POLICY_DIR"}
    assert problems_of(config, f"policy_dir: {missing}\n", env) == [
        f"{config}:1: policy_dir: {str(missing)!r} is not a directory"]


def test_a_directory_that_will_not_do_is_told_beside_a_value_refused(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    # It was told only once the value was fixed: the admin met one problem a start.
    config, missing = tmp_path / "postwarden.yaml", tmp_path / "nowhere"
    env = {"POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool")}
    assert problems_of(config, f"processes: 0\npolicy_dir: {missing}\n", env) == [
        f"{config}:1: processes: must be > 0, got 0",
        f"{config}:2: policy_dir: {str(missing)!r} is not a directory"]
    assert not (tmp_path / "spool").exists()  # a start refused makes nothing
    # No default stands in for a value refused: neither "set policy_dir" nor the default
    # spool_dir is told.
    assert problems_of(config, "policy_dir: 3\nspool_dir: 4\n", {}) == [
        f"{config}:1: policy_dir: expected text, got a number (quote it)",
        f"{config}:2: spool_dir: expected text, got a number (quote it)"]


@pytest.mark.parametrize("name", ["policy_dir", "spool_dir"])
def test_a_relative_directory_is_refused(base_env: dict[str, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # Read from the working directory: a check run by hand where it was passed it, and
    # the systemd unit, in /, did not find it.
    (tmp_path / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "postwarden.yaml"
    env = {k: v for k, v in base_env.items() if k != f"POSTWARDEN_{name.upper()}"}
    assert problems_of(config, f"{name}: dir\n", env) == [
        f"{config}:1: {name}: 'dir' is a relative path: write it in full (the milter reads "
        "it from its working directory, / under systemd)"]


@pytest.mark.parametrize("home", ["/home/alice", "/root", "/run/user/1000"])
def test_a_policy_dir_the_unit_cannot_see_is_told_why(
    base_env: dict[str, str], tmp_path: Path, home: str
) -> None:
    """A checkout in a home directory, which the admin's `ls` shows: the milter under the
    unit (ProtectHome=yes) said only that it "is not a directory"."""
    config, checkout = tmp_path / "postwarden.yaml", f"{home}/no-such-checkout/policies"
    env = {k: v for k, v in base_env.items() if k != "POSTWARDEN_POLICY_DIR"}
    hidden = "/" + home.split("/")[1] if home != "/run/user/1000" else "/run/user"
    assert problems_of(config, f"policy_dir: {checkout}\n", env) == [
        f"{config}:1: policy_dir: {checkout!r} is not a directory (the systemd unit's "
        f"ProtectHome=yes hides {hidden} from the milter: keep the policies outside /home, "
        "/root and /run/user, e.g. in /etc/postwarden)"]
    unit = Path(__file__).resolve().parents[2] / "contrib/systemd/postwarden-milter.service"
    assert "\nProtectHome=yes\n" in unit.read_text(encoding="utf-8")


def test_broken_yaml_is_told_by_line_without_quoting_it(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """PyYAML's own message quotes the line, here a database password."""
    config = tmp_path / "postwarden.yaml"
    text = 'instance_name: mx1\ndatabase_url: "postgresql://u:hunter2@db/pw\n'
    assert problems_of(config, text, base_env) == [
        f"{config}:2:15: YAML syntax error: this quoted value is not closed before the file ends"]


def test_a_value_tagged_as_a_timestamp_it_is_not_is_told_by_line(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """PyYAML's own reader took no match for one: an AttributeError's traceback."""
    config = tmp_path / "postwarden.yaml"
    text = "database_url: !!timestamp postgresql://u:hunter2@db/pw\n"
    assert problems_of(config, text, base_env) == [
        f"{config}:1:15: database_url: YAML syntax error: expected a timestamp"]


def test_a_database_url_asyncpg_cannot_use_is_refused_at_start(base_env: dict[str, str]) -> None:
    env = {**base_env, "POSTWARDEN_DATABASE_URL": "postgresql://u:hunter2@db:five/audit"}
    with pytest.raises(SettingsError) as info:
        load_settings(None, env)
    assert info.value.problems == [
        "POSTWARDEN_DATABASE_URL: database_url: expected postgresql://USER:PASSWORD@HOST:PORT/"
        "DATABASE (a port is not a number from 1 to 65535)"]


def test_a_settings_file_reads_integers_as_a_policy_file_does(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """YAML 1.2, not PyYAML's 1.1: 010 is ten (not eight), 1:30 is text (not ninety)."""
    config = tmp_path / "postwarden.yaml"
    config.write_text("max_concurrency: 010\n")
    assert load_settings(config, base_env).max_concurrency == 10
    assert problems_of(config, "message_timeout_seconds: 1:30\n", base_env) == [
        f"{config}:1: message_timeout_seconds: '1:30' is not a number"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param("MESSAGE_TIMEOUT_SECONDS", "nan", "'nan' is not a finite number", id="nan"),
        pytest.param("POLICY_POLL_SECONDS", "NaN", "'NaN' is not a finite number",
                     id="nan-poll"),
        pytest.param("DUPLICATE_WINDOW_SECONDS", "inf", "'inf' is not a finite number",
                     id="inf"),
        pytest.param("MAX_CONCURRENCY", "-inf", "'-inf' is not a finite number",
                     id="inf-integer"),
        pytest.param("SPOOL_DIR", "", "spool_dir: empty", id="empty-spool-dir"),
    ],
)
def test_values_no_bound_holds_for_are_refused(
    base_env: dict[str, str], name: str, value: str, message: str
) -> None:
    """NaN passed every bound (each comparison is false): a NaN poll killed the reload
    thread, a NaN timeout made the parent kill its workers at once. An empty spool_dir
    was the working directory."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, f"POSTWARDEN_{name}": value})
    assert refused.value.problems == [f"POSTWARDEN_{name}: {name.lower()}: "
                                      + message.removeprefix(f"{name.lower()}: ")
                                      + (" (leave it unset for the default)"
                                         if name == "SPOOL_DIR" else "")]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        pytest.param("processes: true", "processes: True is not a number", id="bool"),
        pytest.param("max_concurrency: yes", "max_concurrency: 'yes' is not a number",
                     id="yes"),
        pytest.param("max_concurrency: 2.5", "max_concurrency: 2.5 is not a whole number",
                     id="fraction"),
        pytest.param("spool_max_bytes: 1e3.5", "spool_max_bytes: '1e3.5' is not a number",
                     id="text"),
        pytest.param("message_timeout_seconds: .nan",
                     "message_timeout_seconds: nan is not a finite number", id="yaml-nan"),
        pytest.param("duplicate_window_seconds: false",
                     "duplicate_window_seconds: False is not a number", id="bool-float"),
        pytest.param("spool_dir:", "spool_dir: no value (remove the line for the default)",
                     id="null-spool-dir"),
    ],
)
def test_numbers_from_the_file_are_taken_as_written_or_refused(
    base_env: dict[str, str], tmp_path: Path, line: str, problem: str
) -> None:
    """int() made true 1 and 2.5 two, without a word."""
    config = tmp_path / "postwarden.yaml"
    env = {k: v for k, v in base_env.items() if not line.startswith("spool_dir")
           or k != "POSTWARDEN_SPOOL_DIR"}
    assert problems_of(config, line + "\n", env) == [f"{config}:1: {problem}"]
    config.write_text("max_concurrency: 8.0\nmessage_timeout_seconds: 2\n")
    settings = load_settings(config, base_env)
    assert (settings.max_concurrency, settings.message_timeout_seconds) == (8, 2.0)


@pytest.mark.parametrize("name", sorted(set(settings_module.SETTING_NAMES) - {
    "policy_dir", "database_url", "metrics_listen", "instance_name", "id_header"}))
def test_a_setting_left_without_a_value_is_told_so(
    base_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    """`max_concurrency:` with nothing after it was "max_concurrency: None is not a
    number", `milter_socket:` "'None' is not inet:PORT@HOST": the admin wrote no None."""
    config = tmp_path / "postwarden.yaml"
    env = {k: v for k, v in base_env.items() if k != f"POSTWARDEN_{name.upper()}"}
    assert problems_of(config, f"{name}:\n", env) == [
        f"{config}:1: {name}: no value (remove the line for the default)"]


def test_a_setting_given_twice_in_the_file_is_refused_with_both_lines(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """YAML keeps the last of two equal keys without a word: an admin editing the first
    would change nothing."""
    config = tmp_path / "postwarden.yaml"
    assert problems_of(config, "processes: 2\nfail_action: accept\nprocesses: 4\n",
                       base_env) == [f"{config}:3: 'processes' set twice (first at line 1)"]


@pytest.mark.parametrize("text", [
    "processes: many\nprocesses: 2\n",  # the first was told, as if it were the one kept
    "processes: 2\nprocesses: many\n",
    "policy_dir: /nowhere\npolicy_dir: /nowhere\n",  # told twice: set twice, no directory
    "processes: !!timestamp soon\nprocesses: 2\n",
])
def test_a_setting_given_twice_is_told_as_that_alone(
    base_env: dict[str, str], tmp_path: Path, text: str
) -> None:
    """Of a setting given twice neither value is read: which is meant is the admin's
    to say. The first was checked, though YAML keeps the last, and told beside the
    duplicate; a policy_dir given twice was also told as no policy source."""
    config = tmp_path / "postwarden.yaml"
    name = text.partition(":")[0]
    env = {k: v for k, v in base_env.items() if k != f"POSTWARDEN_{name.upper()}"}
    assert problems_of(config, text, env) == [f"{config}:2: {name!r} set twice "
                                              "(first at line 1)"]


@pytest.mark.parametrize(("text", "problem"), [
    # Merged, an override of a merged key was "set twice", told at the lines merged from.
    ("processes: 2\n<<: {processes: 4}\n",
     "2: YAML merge keys (<<) are not supported: write the settings out"),
    ("processes: 2\n1: x\n", "2: expected a setting name, got an integer"),  # was line ?
    ("processes: 2\n? [a]\n: x\n", "2: expected a setting name, got a sequence"),
])
def test_a_key_that_names_no_setting_is_refused_at_its_line(
    base_env: dict[str, str], tmp_path: Path, text: str, problem: str
) -> None:
    config = tmp_path / "postwarden.yaml"
    assert problems_of(config, text, base_env) == [f"{config}:{problem}"]


def test_a_misspelt_variable_is_told_and_the_admin_services_are_not() -> None:
    """An unknown POSTWARDEN_ variable is not refused: the admin service reads its own
    from the same environment file. One that looks like a milter setting is told."""
    from postwarden_admin_api.settings import FIELDS  # noqa: PLC0415 - only here

    shared = {f"POSTWARDEN_{name.upper()}": "x" for name in FIELDS}
    environ = {**shared, "POSTWARDEN_CONFIG": "/etc/postwarden/postwarden.yaml",
               "POSTWARDEN_API_KEY": "k", "POSTWARDEN_POLCY_DIR": "/srv/policies",
               "POSTWARDEN_MAX_CONCURENCY": "8", "PATH": "/usr/bin"}
    assert stray_variables(environ) == [
        "POSTWARDEN_MAX_CONCURENCY is not a milter setting, ignored "
        "(did you mean POSTWARDEN_MAX_CONCURRENCY?)",
        "POSTWARDEN_POLCY_DIR is not a milter setting, ignored "
        "(did you mean POSTWARDEN_POLICY_DIR?)",
    ]


def test_a_variable_not_in_capitals_is_told() -> None:
    """Read only as POSTWARDEN_MAX_CONCURRENCY, it was ignored without a word."""
    environ = {"POSTWARDEN_max_concurrency": "8", "postwarden_policy_dir": "/srv/policies",
               "Postwarden_Id_Header": "X-Id", "POSTWARDEN_MAX_CONCURRENCY": "9"}
    assert stray_variables(environ) == [
        "POSTWARDEN_max_concurrency is not a milter setting, ignored "
        "(did you mean POSTWARDEN_MAX_CONCURRENCY?)",
        "Postwarden_Id_Header is not a milter setting, ignored "
        "(did you mean POSTWARDEN_ID_HEADER?)",
        "postwarden_policy_dir is not a milter setting, ignored "
        "(did you mean POSTWARDEN_POLICY_DIR?)",
    ]


def test_a_misspelt_config_variable_is_told() -> None:
    """POSTWARDEN_CONFG left the milter without its settings file, without a word."""
    assert stray_variables({"POSTWARDEN_CONFG": "/etc/postwarden/postwarden.yaml",
                            "POSTWARDEN_CONFIG": "/etc/postwarden/postwarden.yaml"}) == [
        "POSTWARDEN_CONFG is not a milter setting, ignored (did you mean POSTWARDEN_CONFIG?)"]


def test_a_misspelt_variable_is_warned_about_at_start(base_env: dict[str, str]) -> None:
    (Path(base_env["POSTWARDEN_POLICY_DIR"]) / "main.yaml").write_text("version: 1\nname: m\n")
    env = {**base_env, "POSTWARDEN_MESAGE_TIMEOUT_SECONDS": "5", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "postwarden_milter", "check"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "warning: POSTWARDEN_MESAGE_TIMEOUT_SECONDS is not a milter setting, ignored " \
        "(did you mean POSTWARDEN_MESSAGE_TIMEOUT_SECONDS?)" in result.stderr.splitlines()


@pytest.mark.parametrize(("value", "loopback", "every"), [
    ("inet:8899", "inet:8899@127.0.0.1", "inet:8899@0.0.0.0"),
    ("inet6:8899", "inet6:8899@::1", "inet6:8899@::"),
])
def test_an_inet_socket_without_an_address_is_refused(
    base_env: dict[str, str], value: str, loopback: str, every: str
) -> None:
    """libmilter listens on every interface for inet:PORT: whoever reached the port could
    write audit rows and fill max_concurrency (Postfix's mail refused 421). The address
    is asked for, as metrics_listen asks for its host; every interface stays possible."""
    environ = {**base_env, "POSTWARDEN_MILTER_SOCKET": value}
    with pytest.raises(SettingsError, match=f"'{value}' names no address, which listens on "
                       f"every interface: write {loopback} for loopback"):
        load_settings(None, environ)
    for address in (loopback, every):
        assert load_settings(None, {**environ, "POSTWARDEN_MILTER_SOCKET": address}
                             ).milter_socket == address


@pytest.mark.parametrize(("milter_socket", "metrics_listen", "refused"), [
    ("inet:8899@127.0.0.1", "127.0.0.1:8899", True),
    ("inet:8899@127.0.0.1", "localhost:8899", True),  # the same address by name
    ("inet:8899@0.0.0.0", "127.0.0.1:8899", True),  # every interface holds loopback's
    ("inet6:8899@::1", "[::1]:8899", True),
    ("inet:8899@127.0.0.1", "127.0.0.1:9899", False),
    ("inet:8899@127.0.0.1", "127.0.0.2:8899", False),  # another address: no conflict
])
def test_metrics_on_the_milter_sockets_own_port_is_refused(
    base_env: dict[str, str], milter_socket: str, metrics_listen: str, refused: bool
) -> None:
    # The endpoint, opened first, held the port: the start failed as on one another
    # process held (exit 1), retried for ever, and check passed it.
    env = {**base_env, "POSTWARDEN_MILTER_SOCKET": milter_socket,
           "POSTWARDEN_METRICS_LISTEN": metrics_listen}
    if not refused:
        assert load_settings(None, env).metrics_listen == metrics_listen
        return
    with pytest.raises(SettingsError) as info:
        load_settings(None, env)
    assert info.value.problems == [
        f"POSTWARDEN_METRICS_LISTEN: metrics_listen: port 8899 is milter_socket's "
        f"({milter_socket}): give the metrics endpoint a port of its own"]


@pytest.mark.parametrize(("value", "hint"), [
    ("inet:127.0.0.1:8899", "(Postfix's inet:HOST:PORT is inet:8899@127.0.0.1 here)"),
    ("inet6:[::1]:8899", "(Postfix's inet6:HOST:PORT is inet6:8899@::1 here)"),
    # Postfix's IPv6 spelling: libmilter's inet is IPv4 only.
    ("inet:[::1]:8899", "(Postfix's inet:HOST:PORT is inet6:8899@::1 here)"),
])
def test_postfixs_spelling_of_the_socket_is_told_in_libmilters(
    base_env: dict[str, str], value: str, hint: str
) -> None:
    """The admin copies smtpd_milters' value (main.cf's inet:127.0.0.1:8899) and was told
    only that it is not inet:PORT@HOST, which it seems to be."""
    environ = {**base_env, "POSTWARDEN_MILTER_SOCKET": value}
    with pytest.raises(SettingsError) as raised:
        load_settings(None, environ)
    assert str(raised.value).endswith(hint)


@pytest.mark.parametrize(("value", "problem"), [
    ("inet:8899@::1", "::1 is an IPv6 address: write inet6:8899@::1"),
    ("inet:8899@[::1]", "[::1] is an IPv6 address: write inet6:8899@::1"),
    ("inet6:8899@127.0.0.1", "127.0.0.1 is an IPv4 address: write inet:8899@127.0.0.1"),
])
def test_an_address_of_the_other_family_is_refused_with_the_spelling_meant(
    base_env: dict[str, str], value: str, problem: str
) -> None:
    """`check` passed them, and the start failed: "cannot serve on inet:8899@::1:
    Address family for hostname not supported"."""
    with pytest.raises(SettingsError) as raised:
        load_settings(None, {**base_env, "POSTWARDEN_MILTER_SOCKET": value})
    assert raised.value.problems == [f"POSTWARDEN_MILTER_SOCKET: milter_socket: {problem}"]
    for meant in ("inet6:8899@::1", "inet6:8899@[::1]", "inet:8899@127.0.0.1",
                  "inet:8899@localhost"):
        assert load_settings(None, {**base_env, "POSTWARDEN_MILTER_SOCKET": meant}
                             ).milter_socket == meant


def test_main_cfs_chroot_relative_socket_is_told_with_the_full_path(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """unix:/postwarden/milter.sock, copied from smtpd_milters, was refused as "directory
    /postwarden does not exist", not saying the directory meant is in the chroot."""
    chroot = tmp_path / "spool-postfix"
    (chroot / "postwarden").mkdir(parents=True)
    monkeypatch.setattr(settings_module, "POSTFIX_CHROOT", chroot)
    environ = {**base_env, "POSTWARDEN_MILTER_SOCKET": "unix:/postwarden/milter.sock"}
    with pytest.raises(SettingsError) as raised:
        load_settings(None, environ)
    assert str(raised.value).endswith(
        f"directory /postwarden does not exist (main.cf names the socket relative to "
        f"Postfix's chroot, {chroot}: here it is unix:{chroot}/postwarden/milter.sock)")
    with pytest.raises(SettingsError, match=r"directory /elsewhere does not exist$"):
        load_settings(None, {**environ, "POSTWARDEN_MILTER_SOCKET": "unix:/elsewhere/m.sock"})


WHITE_SPACE = "starts or ends with white space (a space, tab or newline): remove it"


@pytest.mark.parametrize("name", ["milter_socket", "metrics_listen", "spool_dir",
                                  "instance_name", "id_header", "fail_action",
                                  "database_url", "max_concurrency"])
@pytest.mark.parametrize("value", [" {v}", "{v} ", "{v}\t", "  "])
def test_white_space_at_a_values_ends_is_refused_naming_where(
    base_env: dict[str, str], tmp_path: Path, name: str, value: str
) -> None:
    """A socket with a space was "' inet:...' is not inet:PORT@HOST" (it is, but for the
    space), a spool_dir or instance name kept it (" /var/x" relative to the working
    directory), an id_header lost it, a number took it."""
    meant = {"milter_socket": "inet:9000@127.0.0.1", "metrics_listen": "127.0.0.1:9899",
             "spool_dir": str(tmp_path / "spool"), "instance_name": "mx1",
             "id_header": "X-Id", "fail_action": "accept",
             "database_url": "postgresql://u:hunter2@127.0.0.1/db", "max_concurrency": "8"}
    given, variable = value.format(v=meant[name]), f"POSTWARDEN_{name.upper()}"
    config = tmp_path / "postwarden.yaml"
    unset = {k: v for k, v in base_env.items() if k != variable}
    assert problems_of(config, f"{name}: {json.dumps(given)}\n", unset) == [
        f"{config}:1: {name}: {WHITE_SPACE}"]
    environ = {**base_env, variable: given}
    with pytest.raises(SettingsError) as refused:
        load_settings(None, environ)
    assert refused.value.problems == [f"{variable}: {name}: {WHITE_SPACE}"]
    assert load_settings(None, {**environ, variable: meant[name]})


@pytest.mark.parametrize(("line", "problem"), [
    ("instance_name: [a]", "instance_name: expected text, got a list"),
    ("instance_name: 12", "instance_name: expected text, got a number (quote it)"),
    ("id_header: false", "id_header: expected text, got true/false (quote it)"),
    ("metrics_listen: {a: 1}", "metrics_listen: expected text, got a mapping"),
    ("spool_dir: [/var/x]", "spool_dir: expected text, got a list"),
    ("policy_dir: 0", "policy_dir: expected text, got a number (quote it)"),
    ("log_level: [info]", "log_level: expected text, got a list"),
    ("max_concurrency: [8]", "max_concurrency: expected a number, got a list"),
])
def test_a_value_of_another_type_is_refused_not_made_text(
    base_env: dict[str, str], tmp_path: Path, line: str, problem: str
) -> None:
    """instance_name: [a] was taken as the name "['a']"."""
    config = tmp_path / "postwarden.yaml"
    variable = "POSTWARDEN_" + line.partition(":")[0].upper()
    env = {k: v for k, v in base_env.items() if k != variable}
    assert problems_of(config, line + "\n", env) == [f"{config}:1: {problem}"]


def test_an_empty_config_path_is_refused_not_read_as_the_working_directory(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """POSTWARDEN_CONFIG= (an environment file's line, a variable expanded unset) was
    ".: cannot read settings file: Is a directory"."""
    (Path(base_env["POSTWARDEN_POLICY_DIR"]) / "main.yaml").write_text("version: 1\nname: m\n")
    config = tmp_path / "postwarden.yaml"
    config.write_text("instance_name: mx1\n")

    def check(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "postwarden_milter", *args],
                              env={**base_env, "PATH": "/usr/bin:/bin",
                                   "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                                   **variables},
                              capture_output=True, text=True, timeout=60, check=False)

    told = ("argument --config: empty (from POSTWARDEN_CONFIG if not given): name the "
            "settings file, or unset POSTWARDEN_CONFIG for none")
    for result in [check("check", POSTWARDEN_CONFIG=""), check("check", "--config", ""),
                   check("--config", "", "check")]:
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1].endswith(told), result.stderr
    given = check("check", "--config", str(config), POSTWARDEN_CONFIG="")
    assert given.returncode == 0, given.stderr
    assert f"settings: ok ({config})" in given.stdout


@pytest.mark.parametrize(("value", "problem"), [
    ("1_000", "'1_000' is not a number"),  # text in a YAML 1.2 file, as in a policy
    ("\u0663", "'\u0663' is not a number"),  # ARABIC-INDIC DIGIT THREE, read as 3
    ("0x10", "'0x10' is not a number"),
    ("1e400", "'1e400' is too large"),
    ("9" * 5000, f"{'9' * 80!r}... (5000 characters) is too large"),
])
def test_a_number_in_a_variable_is_read_as_a_settings_file_writes_one(
    base_env: dict[str, str], tmp_path: Path, value: str, problem: str
) -> None:
    """float() took 1_000 and other scripts' digits, and a refused value was quoted whole."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, "POSTWARDEN_MAX_CONCURRENCY": value})
    assert refused.value.problems == [
        f"POSTWARDEN_MAX_CONCURRENCY: max_concurrency: {problem}"]
    config = tmp_path / "postwarden.yaml"
    config.write_text("max_concurrency: 1_000\n")
    assert problems_of(config, config.read_text(), base_env) == [
        f"{config}:1: max_concurrency: '1_000' is not a number"]
    settings = load_settings(None, {**base_env, "POSTWARDEN_MAX_CONCURRENCY": "+1e3",
                                    "POSTWARDEN_MESSAGE_TIMEOUT_SECONDS": "2.5"})
    assert (settings.max_concurrency, settings.message_timeout_seconds) == (1000, 2.5)


@pytest.mark.parametrize("name", ["milter_socket", "metrics_listen", "fail_action",
                                  "spool_full_action", "log_level", "milter_socket_mode"])
def test_a_huge_refused_value_is_quoted_cut_short(base_env: dict[str, str], name: str) -> None:
    """A megabyte variable made a megabyte line in the journal."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, f"POSTWARDEN_{name.upper()}": "x" * 1_000_000})
    [problem] = refused.value.problems
    assert f"{'x' * 80!r}... (1000000 characters)" in problem and len(problem) < 300


def test_an_id_header_name_longer_than_a_line_is_refused(base_env: dict[str, str]) -> None:
    """A megabyte header name was taken, and added to every message."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, "POSTWARDEN_ID_HEADER": "X" * 1_000_000})
    assert refused.value.problems == ["POSTWARDEN_ID_HEADER: id_header: 1000000 characters "
                                      "long, a header name at most 76"]
    name = "X-" + "i" * 74
    assert load_settings(None, {**base_env, "POSTWARDEN_ID_HEADER": name}).id_header == name


@pytest.mark.parametrize("name", ["spool_dir", "policy_dir", "instance_name", "milter_socket",
                                  "database_url", "metrics_listen", "id_header"])
@pytest.mark.parametrize(("escape", "code"), [("\\0", "0000"), ("\\x85", "0085"),
                                              ("\\t", "0009"), ("\\x7f", "007F")])
def test_a_control_character_in_a_value_is_refused(
    base_env: dict[str, str], tmp_path: Path, name: str, escape: str, code: str
) -> None:
    """Written with a YAML escape: a NUL in spool_dir failed the start with a traceback,
    in milter_socket it was "embedded null byte" naming no setting, in instance_name
    every audit row failed (Postgres text holds no NUL)."""
    config = tmp_path / "postwarden.yaml"
    env = {k: v for k, v in base_env.items() if k != f"POSTWARDEN_{name.upper()}"}
    extra = "" if name == "policy_dir" else f"policy_dir: {base_env['POSTWARDEN_POLICY_DIR']}\n"
    assert problems_of(config, f'{extra}{name}: "{tmp_path}/a{escape}b"\n', env) == [
        f"{config}:{2 if extra else 1}: {name}: holds the control character U+{code}"]


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("MILTER_SOCKET", "inet:\u0661\u0668\u0669\u0669@127.0.0.1",
     "milter_socket: 'inet:\u0661\u0668\u0669\u0669@127.0.0.1' is not inet:PORT@HOST"),
    ("METRICS_LISTEN", "127.0.0.1:\u0661\u0668\u0669\u0669",
     "metrics_listen: '127.0.0.1:\u0661\u0668\u0669\u0669' is not HOST:PORT"),
])
def test_a_port_in_other_digits_than_ascii_is_refused(
    base_env: dict[str, str], name: str, value: str, problem: str
) -> None:
    """ARABIC-INDIC digits passed check; libmilter then could not serve, saying no why."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, f"POSTWARDEN_{name}": value})
    assert refused.value.problems[0].startswith(f"POSTWARDEN_{name}: {problem}")


@pytest.mark.parametrize("name", sorted(set(settings_module.SETTING_NAMES) - {
    "policy_dir", "database_url", "metrics_listen", "instance_name", "id_header"}))
def test_a_setting_given_empty_is_told_so(base_env: dict[str, str], name: str) -> None:
    """NAME= in an environment file was "'' is not a number", "'' is not one of ...",
    "'' is not inet:PORT@HOST ...": the admin wrote nothing."""
    variable = f"POSTWARDEN_{name.upper()}"
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, variable: ""})
    assert refused.value.problems == [
        f"{variable}: {name}: empty (leave it unset for the default)"]


def test_a_number_that_rounds_to_zero_is_refused_not_taken_as_zero(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """policy_poll_seconds: 1e-400 was read as 0 and turned polling off without a word."""
    (Path(base_env["POSTWARDEN_POLICY_DIR"]) / "main.yaml").write_text("version: 1\nname: m\n")
    config = tmp_path / "postwarden.yaml"
    config.write_text("instance_name: mx1\npolicy_poll_seconds: 1e-400\n")
    env = {**base_env, "POSTWARDEN_DUPLICATE_WINDOW_SECONDS": "0.1e-999", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "postwarden_milter", "--config",
                             str(config), "check"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        f"  {config}:2: policy_poll_seconds: '1e-400' is too small (it rounds to 0)",
        "  POSTWARDEN_DUPLICATE_WINDOW_SECONDS: duplicate_window_seconds: '0.1e-999' is too "
        "small (it rounds to 0)"]
    with pytest.raises(SettingsError) as refused:
        load_settings(None, env)
    assert refused.value.problems == ["POSTWARDEN_DUPLICATE_WINDOW_SECONDS: "
                                      "duplicate_window_seconds: '0.1e-999' is too small "
                                      "(it rounds to 0)"]
    assert load_settings(None, {**env, "POSTWARDEN_DUPLICATE_WINDOW_SECONDS": "0e-999"}
                         ).duplicate_window_seconds == 0


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("max_concurrency", "0" * 100_000, "must be > 0"),
    ("message_timeout_seconds", "-" + "0" * 99_998 + "1", "must be > 0"),
    ("local_retry_passes", "1" + "0" * 99_999, None),
])
def test_a_huge_number_refused_is_quoted_cut_short(
    base_env: dict[str, str], name: str, value: str, problem: str | None
) -> None:
    """"must be > 0, got '000...'" quoted a variable whole: as long a line in the journal."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, f"POSTWARDEN_{name.upper()}": value})
    [told] = refused.value.problems
    assert f"{value[:80]!r}... (100000 characters)" in told and len(told) < 300
    assert problem is None or problem in told


LONG_PATH = "/srv/" + "d" * 4000 + "/postwarden"
CUT_PATH = f"{LONG_PATH[:80]!r}... ({len(LONG_PATH)} characters)"


@pytest.mark.parametrize(("variable", "create", "told"), [
    # Not a directory, said is_dir() of a name too long: it raised, a traceback.
    ("POSTWARDEN_POLICY_DIR", True, f"policy_dir: cannot read {CUT_PATH}: File name too long"),
    ("POSTWARDEN_SPOOL_DIR", True, f"spool_dir: cannot create {CUT_PATH}: File name too long"),
    ("POSTWARDEN_SPOOL_DIR", False, f"spool_dir: cannot read {CUT_PATH}: File name too long"),
])
def test_a_long_directory_path_is_cut_as_other_values_are(
    base_env: dict[str, str], variable: str, create: bool, told: str
) -> None:
    """A path 4 KB long was echoed whole, where other values are cut to 80 characters (as
    the admin service's settings cut theirs)."""
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, variable: LONG_PATH}, create_spool_dir=create)
    assert refused.value.problems == [f"{variable}: {told}"]


def test_a_long_settings_file_path_is_cut(base_env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(Path(LONG_PATH), base_env)
    assert refused.value.problems == [
        f"cannot read settings file {CUT_PATH}: File name too long"]
