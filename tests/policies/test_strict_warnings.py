"""`check --strict` and `--error-on CODE`: a CI gate that fails on the loader's warnings
(a Subject tag read as a class, a list's name read as a domain), which otherwise change no
exit code; the JSON document says which warnings failed the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postwarden_policies.cli import EXIT_WARNINGS, main

POLICY = """version: 1
name: p
rules:
  - name: tagged
    when: {subject: '[SPAM]', sender_domain: [partners]}
    then: reject
tests:
  - name: c
    raw: "Subject: hi\\n\\nbody\\n"
    recipients: [a@b.test]
    expect: accept
"""


@pytest.fixture
def policy(tmp_path: Path) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    return str(path)


@pytest.mark.parametrize("command", ["check", "test"])
@pytest.mark.parametrize(("options", "code"), [
    pytest.param([], 0, id="warnings-pass"),
    pytest.param(["--strict"], EXIT_WARNINGS, id="strict"),
    pytest.param(["--error-on", "bracketed_word"], EXIT_WARNINGS, id="error-on-present"),
    pytest.param(["--error-on", "case_folding"], 0, id="error-on-absent"),
])
def test_exit_code(policy: str, command: str, options: list[str], code: int) -> None:
    assert main([command, *options, policy]) == code


def test_a_failing_case_keeps_its_code(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("expect: accept", "expect: reject"))
    assert main(["test", "--strict", str(path)]) == 1


@pytest.mark.parametrize("command", ["check", "test"])
def test_json_names_the_failing_warnings(
    policy: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--format", "json", "--error-on", "single_label_domain",
                 policy]) == EXIT_WARNINGS
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    fatal = {(w["code"], w["fatal"]) for w in document["warnings"]}
    assert fatal == {("bracketed_word", False), ("single_label_domain", True)}


def test_text_marks_the_failing_warnings(policy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--error-on", "bracketed_word", policy]) == EXIT_WARNINGS
    out, err = capsys.readouterr()
    assert out == ""  # no "ok:" line for a run that failed
    lines = err.splitlines()
    assert any("fatal warning:" in line and "[bracketed_word]" in line for line in lines)
    assert any("warning:" in line and "[single_label_domain]" in line for line in lines)
    assert lines[-1] == "failed: 1 warning(s) are errors here (--strict, --error-on)"


def test_an_unknown_code_is_a_usage_error(policy: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--error-on", "bracketed_words", policy])
    assert exc.value.code == 2
