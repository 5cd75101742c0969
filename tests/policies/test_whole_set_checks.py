"""Against the whole loaded set a case is checked on everything it states that the set
decides, not on its action only: a rule of another file that takes the message first
must not leave a test passing that the deployment fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import load_policy_set, run_policy_tests
from postwarden_policies.cli import main

from .policy_helpers import said

SAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples" / "samples"
MACRO_DOCUMENT = SAMPLES / "macro-document.eml"
PARTNER = """version: 1
name: partner
priority: 10
rules:
  - name: trusted-supplier
    when: {sender_domain: [supplier.test]}
    then: accept
"""
# Matches too, but takes no action: the message goes on to the other rules.
TAGGING = PARTNER.replace("then: accept", "then: {add_header: {X-Supplier: 'yes'}}")
HYGIENE = f"""version: 1
name: hygiene
priority: 20
rules:
  - name: strip-macros
    when: {{attachment: {{filename: ["*.docm"]}}}}
    then: {{strip_attachment: true, add_header: {{X-Stripped: "yes"}}}}
tests:
  - name: stripped
    message: {MACRO_DOCUMENT}
    sender: billing@supplier.test
    recipients: [accounts@example.com]
    expect: accept
"""
SHADOWED = (
    "    expect_rules: [strip-macros]\n    expect_stripped: [invoice.docm]\n"
    "    expect_headers: {X-Stripped: 'yes'}\n"
)


def policy_dir(tmp_path: Path, partner: str, expectations: str) -> Path:
    (tmp_path / "a.yaml").write_text(partner)
    (tmp_path / "b.yaml").write_text(HYGIENE + expectations)
    return tmp_path


def test_a_shadowed_rule_breaks_the_case_in_the_whole_set(tmp_path: Path) -> None:
    (result,) = run_policy_tests(load_policy_set([policy_dir(tmp_path, PARTNER, SHADOWED)]))
    assert result.passed  # alone
    assert result.whole_set is not None and result.whole_set.rules == ("trusted-supplier",)
    assert not result.other_action
    assert said(result.whole_set_problems) == (
        "expected rules [strip-macros] among those matched, got [trusted-supplier]",
        "expected header X-Stripped: 'yes', got []",
        "expected stripped ['invoice.docm'], got []",
    )


def test_whole_set_flag_fails_it_with_expected_and_actual(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = policy_dir(tmp_path, PARTNER, SHADOWED)
    assert main(["test", "--whole-set", str(directory)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"FAIL {directory / 'b.yaml'}:9: stripped [rules: strip-macros]",
        "    whole set: accept [rules: trusted-supplier]",
        "    whole set: expected rules [strip-macros] among those matched, got [trusted-supplier]",
        "    whole set: expected header X-Stripped: 'yes', got []",
        "    whole set: expected stripped ['invoice.docm'], got []",
        "0 passed, 1 failed",
    ]


def test_without_the_flag_only_another_action_is_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = policy_dir(tmp_path, PARTNER, SHADOWED)
    assert main(["test", str(directory)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"PASS {directory / 'b.yaml'}:9: stripped [rules: strip-macros]",
        "1 passed, 0 failed",
    ]


def test_other_policies_rules_matching_too_are_no_failure(tmp_path: Path) -> None:
    (result,) = run_policy_tests(load_policy_set([policy_dir(tmp_path, TAGGING, SHADOWED)]))
    assert result.passed and result.whole_set is None


def test_the_reply_is_checked_in_the_whole_set(tmp_path: Path) -> None:
    refusing = PARTNER.replace("then: accept", "then: reject\n    message: Not from you")
    rejecting = HYGIENE.replace("    expect: accept\n", "").replace(
        'then: {strip_attachment: true, add_header: {X-Stripped: "yes"}}',
        "then: reject\n    message: No macros",
    )
    (tmp_path / "a.yaml").write_text(refusing)
    (tmp_path / "b.yaml").write_text(
        rejecting + "    expect: reject\n    expect_reply: '550 5.7.1 No macros'\n"
    )
    (result,) = run_policy_tests(load_policy_set([tmp_path]))
    assert result.passed and not result.other_action
    assert said(result.whole_set_problems) == (
        "expected reply '550 5.7.1 No macros', got '550 5.7.1 Not from you'",
    )


def test_a_problem_the_policy_has_alone_is_not_repeated(tmp_path: Path) -> None:
    expectations = "    expect_headers: {X-Other: '1'}\n"
    (result,) = run_policy_tests(load_policy_set([policy_dir(tmp_path, TAGGING, expectations)]))
    assert said(result.problems) == ("expected header X-Other: '1', got []",)
    assert result.whole_set is None


def test_a_rule_the_policy_alone_misses_is_told_once(tmp_path: Path) -> None:
    expectations = "    expect_rules: [other-rule]\n"
    hygiene = HYGIENE.replace("rules:\n", "rules:\n  - {name: other-rule, when: "
                              "{sender: [nobody@nowhere.test]}, then: reject}\n", 1)
    (tmp_path / "a.yaml").write_text(TAGGING)
    (tmp_path / "b.yaml").write_text(hygiene + expectations)
    (result,) = run_policy_tests(load_policy_set([tmp_path]))
    assert said(result.problems) == ("expected rules [other-rule], got [strip-macros]",)
    assert result.whole_set_problems == ()


def test_a_rule_only_the_whole_set_misses_is_told_beside_one_the_policy_misses(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(
        "version: 1\nname: a\npriority: 1\nrules:\n"
        "  - {name: stop-bar, when: {subject: bar}, then: accept}\n")
    (tmp_path / "b.yaml").write_text(
        "version: 1\nname: b\npriority: 2\nrules:\n"
        "  - {name: tag-foo, when: {subject: foo}, then: {add_header: {X-Foo: '1'}}}\n"
        "  - {name: tag-bar, when: {subject: bar}, then: {add_header: {X-Bar: '1'}}}\n"
        "tests:\n  - name: both\n    raw: \"Subject: bar\\n\\nhi\\n\"\n"
        "    recipients: [a@b.test]\n    expect: accept\n    expect_rules: [tag-foo, tag-bar]\n")
    (result,) = run_policy_tests(load_policy_set([tmp_path]))
    assert said(result.problems) == ("expected rules [tag-foo, tag-bar], got [tag-bar]",)
    assert said(result.whole_set_problems) == (
        "expected rules [tag-foo, tag-bar] among those matched, got [stop-bar]",)


ENFORCED = """version: 1
name: macros
rules:
  - name: block-macros
    when: {attachment: {filename: ["*.docm"]}}
    then: reject
"""
# The documented trial: a report-mode copy beside the policy it would replace, its rule
# named as the enforced one's. Alone it accepts and reports; in the set the enforced
# copy rejects the sample, which is no failure of the trial's case.
TRIAL = f"""version: 1
name: macros-trial
mode: report
rules:
  - name: block-macros
    when: {{attachment: {{filename: ["*.docm", "*.xlsm"]}}}}
    then: reject
tests:
  - name: the trial reports it
    message: {MACRO_DOCUMENT}
    sender: billing@supplier.test
    recipients: [accounts@example.com]
    expect: accept
    expect_rules: [report:block-macros]
"""


def test_a_report_mode_trial_passes_whole_set_whatever_the_enforced_policies_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "macros.yaml").write_text(ENFORCED)
    (tmp_path / "trial.yaml").write_text(TRIAL)
    assert main(["test", "--whole-set", str(tmp_path)]) == 0, capsys.readouterr().out
    (result,) = run_policy_tests(load_policy_set([tmp_path]))
    assert result.whole_set is None and not result.other_action


def test_a_report_mode_trial_still_needs_its_report_rules_in_the_whole_set(
    tmp_path: Path,
) -> None:
    """The report rule must match in the set too: here the set's structure limit stops the
    parser before the attachment, so the trial's rule never reports in the deployment."""
    (tmp_path / "macros.yaml").write_text(ENFORCED + "limits: {max_mime_parts: 1}\n")
    (tmp_path / "trial.yaml").write_text(TRIAL)
    (result,) = run_policy_tests(load_policy_set([tmp_path]))
    assert result.passed  # alone
    assert result.whole_set is not None
    assert [p.expectation for p in result.whole_set_problems] == ["expect_rules"]
