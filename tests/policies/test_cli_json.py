"""`check` and `test`: exit codes that tell a broken file (2) from a failing test (1), and
`--format json`, one document on stdout with the field names docs/policy-language.md gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from postwarden_policies import load_policy_set
from postwarden_policies.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
POLICY = """version: 1
name: p
rules:
  - name: r
    then: {action: reject, notify: [soc]}
tests:
  - name: c
    raw: "Subject: x\\n\\nbody\\n"
    recipients: [a@b.test]
    expect: EXPECT
"""
NO_TESTS = POLICY.split("tests:", maxsplit=1)[0]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    """The exit code and the JSON document; nothing but it is printed."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert err == ""
    return code, json.loads(out)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("command", "text", "code"), [
    pytest.param("check", POLICY.replace("EXPECT", "accept"), 0, id="check-ok"),
    pytest.param("check", "version: 1\n", 2, id="check-not-loaded"),
    pytest.param("test", POLICY.replace("EXPECT", "reject"), 0, id="test-passed"),
    pytest.param("test", POLICY.replace("EXPECT", "accept"), 1, id="test-failed"),
    pytest.param("test", "version: 1\n", 2, id="test-not-loaded"),
    # A CI job pointed at a directory with no tests: no silent pass; check is content.
    pytest.param("test", NO_TESTS, 5, id="test-none-ran"),
    pytest.param("check", NO_TESTS, 0, id="check-no-tests"),
])
@pytest.mark.parametrize("output", ["text", "json"])
def test_exit_codes(tmp_path: Path, command: str, text: str, code: int, output: str) -> None:
    assert main([command, "--format", output, str(write(tmp_path, text))]) == code


def test_check_json_when_it_loads(capsys: pytest.CaptureFixture[str]) -> None:
    digest = load_policy_set([EXAMPLES]).content_hash
    assert run(["check", "--format", "json", str(EXAMPLES)], capsys) == (0, {
        "version": 1, "ok": True, "errors": [], "warnings": [],
        "policies": 2, "rules": 9, "policy_hash": digest,
    })


def test_check_json_gives_each_error_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, POLICY.replace("EXPECT", "bounce"))
    gone = tmp_path / "gone.yaml"
    assert run(["check", "--format", "json", str(path), str(gone)], capsys) == (2, {
        "version": 1, "ok": False, "warnings": [],
        "errors": [  # by file, line and column, as the text
            {"file": str(gone), "line": None, "column": None,
             "message": "no such file or directory"},
            {"file": str(path), "line": 10, "column": 13,
             "message": "test 'c': expect: expected one of accept, reject, tempfail, "
                        "discard, quarantine; got 'bounce'"},
        ],
        "policies": None, "rules": None, "policy_hash": None,
    })


def test_test_json_gives_each_case_and_what_it_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, POLICY.replace("EXPECT", "accept") + "    expect_notify: []\n")
    code, document = run(["test", "--format", "json", str(path)], capsys)
    assert code == 1
    assert document == {
        "version": 1, "ok": False, "errors": [], "warnings": [],
        "cases": [{
            "file": str(path), "line": 7, "name": "c", "policy": "p", "passed": False,
            "action": "reject", "rules": ["r"], "flags": [], "notify": ["soc"],
            "failures": [
                {"expectation": "expect", "message": "expected accept, got reject"},
                {"expectation": "expect_notify", "message": "expected notify [], got [soc]"},
            ],
            "whole_set": None,
        }],
        "passed": 0, "failed": 1,
    }


def test_test_json_when_the_policies_do_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "version: 1\n")
    assert run(["test", "--format", "json", str(path)], capsys) == (2, {
        "version": 1, "ok": False, "warnings": [], "cases": [], "passed": 0, "failed": 0,
        "errors": [{"file": str(path), "line": 1, "column": 1,
                    "message": "missing required key 'name' in policy"}],
    })


def test_test_json_when_no_case_ran_is_not_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, NO_TESTS)
    assert run(["test", "--format", "json", str(path)], capsys) == (5, {
        "version": 1, "ok": False, "errors": [], "warnings": [], "cases": [],
        "passed": 0, "failed": 0,
    })


def test_test_json_shows_the_whole_set_and_fails_with_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(
        "version: 1\nname: first\npriority: 1\nrules:\n  - {name: all, then: discard}\n")
    write(tmp_path, POLICY.replace("EXPECT", "reject"))
    for flag, code in (([], 0), (["--whole-set"], 1)):
        _, document = run(["test", "--format", "json", *flag, str(tmp_path)], capsys)
        (case,) = document["cases"]
        assert (main(["test", *flag, str(tmp_path)]), case["passed"]) == (code, not code)
        capsys.readouterr()
        assert (case["failures"], case["whole_set"]) == ([], {
            "action": "discard", "rules": ["all"], "flags": [], "notify": [],
            "other_action": True,
            "failures": [{"expectation": "expect", "message": "expected reject, got discard"}],
        })


def test_the_example_policies_pass_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run(["test", "--whole-set", "--format", "json", str(EXAMPLES)], capsys)
    assert (code, document["ok"], document["passed"], document["failed"]) == (0, True, 21, 0)
    assert {tuple(case) for case in document["cases"]} == {(
        "file", "line", "name", "policy", "passed", "action", "rules", "flags", "notify",
        "failures", "whole_set")}


def test_format_is_a_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "--format", "yaml", str(EXAMPLES)])
    assert exited.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


REWRITE_FAILS = r'''version: 1
name: rw
rules:
  - name: strip-all
    then: strip_attachment
tests:
  - name: a uuencoded file cannot be stripped
    raw: "From: a@b.test\nSubject: x\nContent-Type: text/plain\n\nhello\n\
      begin 644 evil.exe\nM1&5L;&\\@=V]R;&0*\n`\nend\n"
    recipients: [bob@example.com]
    expect: quarantine
    expect_flags: [rewrite_failed, uuencoded]
'''


def test_json_mode_writes_nothing_but_the_document(tmp_path: Path) -> None:
    """The engine warns when a rewrite fails; with --format json that line must not reach
    stderr, where `2>&1 | jq` would read it (the verdict's flag says it already)."""
    (tmp_path / "rw.yaml").write_text(REWRITE_FAILS)
    script = Path(sys.executable).with_name("postwarden-policy")
    ran = subprocess.run([str(script), "test", "--format", "json", str(tmp_path)],
                         capture_output=True, check=False, timeout=60)
    assert ran.returncode == 0, ran.stdout
    assert ran.stderr == b""
    assert json.loads(ran.stdout)["passed"] == 1


def test_eval_in_json_mode_writes_nothing_but_the_verdict(tmp_path: Path) -> None:
    """eval --format json wrote the engine's warning (a rewrite that failed) to stderr,
    which `2>&1 | jq` reads; the verdict's reason and flag say it already."""
    (tmp_path / "rw.yaml").write_text(REWRITE_FAILS)
    sample = tmp_path / "uu.eml"
    sample.write_bytes(b"Subject: x\n\nhello\nbegin 644 evil.exe\nM1&5L;&\\@=V]R;&0*\n`\nend\n")
    script = Path(sys.executable).with_name("postwarden-policy")
    ran = subprocess.run([str(script), "eval", "--format", "json", "--policy", str(tmp_path),
                          "--from", "a@b.test", "--to", "bob@example.com", str(sample)],
                         capture_output=True, check=False, timeout=60)
    assert (ran.returncode, ran.stderr) == (0, b"")
    assert json.loads(ran.stdout)["flags"] == ["rewrite_failed", "uuencoded"]


def test_text_mode_names_the_case_an_engine_warning_is_of(tmp_path: Path) -> None:
    """The engine's warnings (a rewrite that failed) reached stderr without the case they
    were of, once for the policy alone and again for the whole set: among many cases
    nobody could tell which. Now once, at the case's file, line and column."""
    (tmp_path / "rw.yaml").write_text(REWRITE_FAILS)
    (tmp_path / "tag.yaml").write_text('version: 1\nname: tag\nrules:\n  - name: t\n'
                                       '    then: {add_header: {X-T: "1"}}\n')
    script = Path(sys.executable).with_name("postwarden-policy")
    text = subprocess.run([str(script), "test", str(tmp_path)], capture_output=True,
                          check=False, timeout=60, text=True)
    assert text.returncode == 0, text.stdout
    assert text.stderr.splitlines() == [
        f"{tmp_path / 'rw.yaml'}:7:5: test 'a uuencoded file cannot be stripped': warning: "
        "rewrite failed (a uuencoded file cannot be changed apart from its text); "
        "quarantined"]
