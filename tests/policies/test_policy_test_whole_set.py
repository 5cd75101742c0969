"""`test` runs each case against its policy alone, and shows (or, with --whole-set, fails)
a case the whole loaded set gives another action."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import load_policy_set, run_policy_tests
from postwarden_policies.cli import main

STRICT = "version: 1\nname: strict\npriority: 1\nrules:\n  - name: all\n    then: reject\n"
OWN = (
    "version: 1\nname: own\ntests:\n  - name: alone\n    raw: 'Subject: x\n\n      body'\n"
    "    recipients: [a@b.test]\n    expect: accept\n"
)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "a.yaml").write_text(STRICT)
    (tmp_path / "b.yaml").write_text(OWN)
    return tmp_path


def test_result_carries_the_whole_sets_verdict(policy_dir: Path) -> None:
    (result,) = run_policy_tests(load_policy_set([policy_dir]))
    assert result.passed
    assert result.verdict is not None and result.verdict.action.value == "accept"
    assert result.whole_set is not None
    assert (result.whole_set.action.value, result.whole_set.rules) == ("reject", ("all",))


def test_same_action_in_the_whole_set_carries_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(STRICT.replace("then: reject", "then: accept"))
    (tmp_path / "b.yaml").write_text(OWN)
    (result,) = run_policy_tests(load_policy_set([tmp_path]))
    assert (result.passed, result.whole_set) == (True, None)


def test_test_shows_the_difference(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(policy_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"PASS {policy_dir / 'b.yaml'}:4: alone [rules: (none)]",
        "    whole set: reject [rules: all] where this policy alone gives accept",
        "1 case(s) get another action from the whole set (--whole-set makes that a failure)",
        "1 passed, 0 failed",
    ]


def test_whole_set_flag_fails_the_case(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", "--whole-set", str(policy_dir)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"FAIL {policy_dir / 'b.yaml'}:4: alone [rules: (none)]",
        "    message flags: malformed, missing_header_separator",
        "    whole set: reject [rules: all] where this policy alone gives accept",
        "0 passed, 1 failed",
    ]
