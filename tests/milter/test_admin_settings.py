"""Settings as an admin writes them in the YAML file: a setting left without a value
fails the start with one line naming it, not a default nobody meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.milter.test_process import _env, _run


@pytest.mark.parametrize("command", [[], ["check"]])
def test_an_id_header_without_a_value_is_refused(tmp_path: Path, command: list[str]) -> None:
    """`id_header:` with nothing after it is YAML's null: the milter added a header
    named "None" to every message."""
    config = tmp_path / "postwarden.yaml"
    config.write_text("fail_action: tempfail\nid_header:\n")
    result = _run(["--config", str(config), *command], _env(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "postwarden-milter: invalid settings:",
        f'  {config}:2: id_header: no value (write "" to turn the header off, or remove the '
        "line for the default)",
    ]


@pytest.mark.parametrize("command", [[], ["check"]])
def test_a_poll_too_often_is_refused(tmp_path: Path, command: list[str]) -> None:
    """A poll every microsecond kept the idle milter listing policy_dir, on half a core."""
    result = _run(command, _env(tmp_path, policy_poll_seconds="0.000001"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "postwarden-milter: invalid settings:",
        "  POSTWARDEN_POLICY_POLL_SECONDS: policy_poll_seconds: at least 0.1 (0 turns polling "
        "off), got '0.000001'",
    ]
