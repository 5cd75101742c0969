"""`expect_headers_absent`, `expect_flags` and `expect_notify`: read and refused at their
line, checked alone and in the whole set, told on failure."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from postwarden_policies import PolicyLoadError, load_policy_set, policy_schema, run_policy_tests
from postwarden_policies.cli import main
from postwarden_policies.loader import check_policy_text, load_policy_set_from_sources

from .policy_helpers import said

# A Subject twice: the parser flags duplicate_header and, with it, malformed.
MESSAGE = "From: a@b.test\\nSubject: one\\nSubject: two\\nX-Spam: yes\\n\\nhello\\n"
POLICY = f"""version: 1
name: p
rules:
  - name: scrub
    then: {{remove_header: [X-Spam], add_header: {{X-Seen: "1"}}, notify: [soc, audit]}}
tests:
  - name: CASE
    raw: "{MESSAGE}"
    recipients: [c@d.test]
    expect: accept
"""


def outcome(expectations: str) -> tuple[bool, tuple[str, ...]]:
    text = POLICY + "".join(f"    {line}\n" for line in expectations.splitlines())
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    return result.passed, said(result.problems)


@pytest.mark.parametrize(("expectations", "passed", "problems"), [
    pytest.param("expect_headers_absent: [x-spam, X-Other]", True, (), id="absent"),
    pytest.param("expect_headers_absent: X-Seen", False,
                 ("expected no header X-Seen, got ['1']",), id="absent-but-added"),
    pytest.param("expect_headers_absent: [From]", False,
                 ("expected no header From, got ['a@b.test']",), id="absent-but-kept"),
    pytest.param("expect_flags: [duplicate_header]", True, (), id="flags-among-others"),
    pytest.param("expect_flags: [malformed, duplicate_header]", True, (), id="flags-all"),
    pytest.param("expect_flags: [bare_cr, malformed]", False,
                 ("expected flags [bare_cr, malformed] among the verdict's, "
                  "got [duplicate_header, malformed]",), id="flag-missing"),
    pytest.param("expect_notify: [audit, soc]", True, (), id="notify-any-order"),
    pytest.param("expect_notify: [soc]", False,
                 ("expected notify [soc], got [soc, audit]",), id="notify-exact"),
    pytest.param("expect_notify: []", False,
                 ("expected notify [], got [soc, audit]",), id="notify-none"),
])
def test_case_outcome(expectations: str, passed: bool, problems: tuple[str, ...]) -> None:
    assert outcome(expectations) == (passed, problems)


def test_each_failure_names_the_expectation_it_breaks() -> None:
    text = POLICY + ("    expect_headers_absent: [X-Seen]\n    expect_flags: [bare_cr]\n"
                     "    expect_notify: [soc]\n")
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert [f.expectation for f in result.problems] == [
        "expect_notify", "expect_headers_absent", "expect_flags"]


def test_no_notify_expected_of_a_case_that_raises_none() -> None:
    text = POLICY.replace(", notify: [soc, audit]", "") + "    expect_notify: []\n"
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert result.passed


@pytest.mark.parametrize(("expectation", "column", "problem"), [
    pytest.param("expect_headers_absent: ['X Spam']", 29,
                 "expected a header name, got 'X Spam'", id="header-name"),
    pytest.param("expect_flags: [malformed, malfromed]", 31,
                 "expected one of ambiguous_filename,", id="unknown-flag"),
    pytest.param("expect_flags: []", 19, "expected at least 1 item(s)", id="no-flag"),
    pytest.param("expect_notify: [soc, 'a b']", 26,
                 "expected a webhook endpoint name, got 'a b'", id="endpoint-name"),
])
def test_a_malformed_expectation_is_refused_at_its_line(
    expectation: str, column: int, problem: str
) -> None:
    (issue,) = check_policy_text("p.yaml", POLICY + f"    {expectation}\n")
    assert (issue.line, issue.column) == (11, column)
    assert issue.message.startswith(f"test 'CASE': {problem}")
    document = yaml.safe_load(POLICY + f"    {expectation}\n")
    assert not jsonschema.Draft202012Validator(policy_schema()).is_valid(document)


def test_every_flag_a_verdict_carries_may_be_expected() -> None:
    """The parser's flags, and the engine's own: a rewrite that failed, an internal error."""
    text = POLICY + "    expect_flags: [malformed, bidi_override, rewrite_failed, internal_error]\n"
    assert check_policy_text("p.yaml", text) == []
    jsonschema.Draft202012Validator(policy_schema()).validate(yaml.safe_load(text))


def test_a_header_expected_and_expected_absent_is_refused_by_check(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY + "    expect_headers: {X-Seen: '1'}\n"
                      "    expect_headers_absent: [x-seen]\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([policy], check_samples=True)
    assert [str(i) for i in refused.value.issues] == [
        f"{policy}:12:29: test 'CASE': header 'x-seen' is expected in expect_headers too: "
        "no message can meet both"]
    # As a misspelt limit: a milter loads the policy that filters mail whatever a test says.
    assert load_policy_set([policy]).policies[0].name == "p"



@pytest.mark.parametrize(("mode", "refs", "told"), [
    ("enforce", "[r, 'report:r', 'report:limit:max_recipients']",
     ["'report:r' in expect_rules: verdicts of this enforce-mode policy name the rule 'r'",
      "'report:limit:max_recipients' in expect_rules: verdicts of this enforce-mode policy "
      "name the limit 'limit:max_recipients'"]),
    # The parser's cap on parts binds whatever is loaded: unprefixed in any verdict.
    ("report", "['report:r', r, 'limit:max_recipients', 'limit:max_mime_parts']",
     ["'r' in expect_rules: verdicts of this report-mode policy name the rule 'report:r'",
      "'limit:max_recipients' in expect_rules: verdicts of this report-mode policy name "
      "the limit 'report:limit:max_recipients'"]),
])
def test_a_rule_expected_with_the_wrong_mode_prefix_is_refused_by_check(
    tmp_path: Path, mode: str, refs: str, told: list[str]
) -> None:
    """Such a case can never pass (the policy's own verdicts name the rule otherwise):
    `check` says so at the name (where CI marks it), not only `test` as a failure."""
    policy = tmp_path / "p.yaml"
    policy.write_text(f"version: 1\nname: p\nmode: {mode}\nrules: [{{name: r, then: accept}}]\n"
                      "tests:\n  - name: c\n    raw: \"Subject: x\\n\\nhi\\n\"\n"
                      f"    recipients: [a@b.test]\n    expect: accept\n    expect_rules: {refs}\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([policy], check_samples=True)
    assert [(i.line, i.message) for i in refused.value.issues] == [
        (10, f"test 'c': {t}") for t in told]  # at the expect_rules line
    # As a misspelt limit: a milter loads the policy that filters mail whatever a test says.
    assert load_policy_set([policy]).policies[0].name == "p"


OTHER = """version: 1
name: other
priority: 200
rules:
  - name: mark
    then: {add_header: {X-Spam: "maybe"}, notify: [siem]}
"""


@pytest.mark.parametrize("expectation", [
    "expect_headers: {X-Seen: '1'}", "expect_headers_absent: [X-Spam]",
    "expect_stripped: []"])
def test_what_is_delivered_is_not_expected_of_a_refused_message(
    tmp_path: Path, expectation: str
) -> None:
    """A rejected message is delivered with nothing: its headers were checked on the
    message as it came, and passed or failed for the wrong reason."""
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("expect: accept", "expect: reject")
                      + f"    {expectation}\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([policy], check_samples=True)
    [issue] = refused.value.issues
    assert issue.line == 11
    assert "expect: reject delivers nothing" in issue.message


def test_a_sample_path_the_system_refuses_is_an_issue_at_its_case(tmp_path: Path) -> None:
    """A name too long for the file system: the case's line says so, and the other
    problems of the set are still told."""
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace('raw: "' + MESSAGE + '"', "message: " + "x" * 300 + ".eml"))
    (tmp_path / "q.yaml").write_text("version: 1\nname: q\nrules:\n  - name: r\n"
                                     "    then: rejekt\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([tmp_path], check_samples=True)
    told = [(Path(i.file).name, i.line, i.message) for i in refused.value.issues]
    assert told[0][:2] == ("p.yaml", 8)  # the case, whose message: is one of its keys
    assert "cannot read message file" in told[0][2] and "name too long" in told[0][2]
    assert [(name, line) for name, line, _ in told[1:]] == [("q.yaml", 5)]


def test_the_whole_set_may_notify_more_but_not_bring_back_a_header(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(OTHER)
    (tmp_path / "b.yaml").write_text(
        POLICY + "    expect_notify: [audit, soc]\n    expect_headers_absent: [X-Spam]\n"
        "    expect_flags: [duplicate_header]\n")
    (result,) = run_policy_tests(load_policy_set([tmp_path]))
    assert result.passed  # alone
    assert result.whole_set is not None and set(result.whole_set.notify) == {
        "siem", "soc", "audit"}
    assert said(result.whole_set_problems) == ("expected no header X-Spam, got ['maybe']",)


def test_the_whole_set_missing_an_endpoint_is_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(OTHER.replace("priority: 200", "priority: 1").replace(
        "then: {add_header: {X-Spam: \"maybe\"}, notify: [siem]}", "then: accept"))
    (tmp_path / "b.yaml").write_text(POLICY + "    expect_notify: [soc, audit]\n")
    assert main(["test", "--whole-set", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"FAIL {tmp_path / 'b.yaml'}:7: CASE [rules: scrub]",
        "    message flags: duplicate_header, malformed",
        "    whole set: accept [rules: mark]",
        "    whole set: expected notify [soc, audit] among those notified, got []",
        "0 passed, 1 failed",
    ]


def test_test_shows_the_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY + "    expect_headers_absent: [X-Seen]\n    expect_flags: [bare_cr]\n"
                      "    expect_notify: [soc]\n")
    assert main(["test", str(policy)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"FAIL {policy}:7: CASE [rules: scrub]",
        "    expected notify [soc], got [soc, audit]",
        "    expected no header X-Seen, got ['1']",
        "    expected flags [bare_cr] among the verdict's, got [duplicate_header, malformed]",
        "    message flags: duplicate_header, malformed",
        "0 passed, 1 failed",
    ]


def test_an_attachment_without_a_name_is_expected_stripped_as_the_docs_say() -> None:
    """A test author cannot guess the stand-in name: the docs give it."""
    message = ("Content-Type: multipart/mixed; boundary=b\\n\\n--b\\nContent-Type: text/plain\\n\\n"
               "hi\\n--b\\nContent-Type: application/x-msdownload\\n"
               "Content-Disposition: attachment\\n\\nMZ\\n--b--\\n")
    text = ("version: 1\nname: p\nrules:\n  - name: s\n    when: {attachment: {content_type: "
            "application/x-msdownload}}\n    then: strip_attachment\ntests:\n  - name: t\n"
            f"    raw: \"{message}\"\n    recipients: [c@d.test]\n    expect: accept\n"
            "    expect_stripped: ['(unnamed)']\n")
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert result.passed, said(result.problems)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "policy-language.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `expect_stripped` |"))
    assert "`(unnamed)`" in row


@pytest.mark.parametrize(("expected", "told"), [
    ("r1", "unknown rule 'r1' in expect_rules"),  # renamed, the case not updated
    ("limit:max_recipeints", "unknown limit 'max_recipeints' in 'limit:max_recipeints' "
                             "(limits: "),
    ("report:r2", "'report:r2' in expect_rules: verdicts of this enforce-mode policy name "
                  "the rule 'r2'"),
], ids=["renamed-rule", "misspelt-limit", "misplaced-report-prefix"])
def test_eval_tells_an_expectation_no_verdict_meets_at_its_line_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expected: str, told: str
) -> None:
    """eval loads as a milter does: the case's mistake is a warning, placed as check's
    (the limit and the prefix were not even that)."""
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: p\nrules: [{name: r2, then: reject}]\ntests:\n"
                      "  - name: c\n    raw: \"Subject: x\\n\\nhi\\n\"\n"
                      "    recipients: [a@b.test]\n"
                      f"    expect: reject\n    expect_rules: [{expected}]\n")
    message = tmp_path / "m.eml"
    message.write_bytes(b"Subject: x\n\nhi\n")
    assert main(["eval", "--policy", str(tmp_path), "--from", "a@b.test", "--to", "c@d.test",
                 str(message)]) == 0
    out, err = capsys.readouterr()
    assert "rules: r2" in out
    assert err.startswith(f"{policy}:9:20: warning: test 'c': {told}")
    assert main(["check", str(policy)]) == 2
    assert f"test 'c': {told}" in capsys.readouterr().err


def test_a_mistake_in_a_list_of_expectations_is_placed_at_its_item(tmp_path: Path) -> None:
    """A CI annotation at the list's first item pointed at a line without the mistake."""
    (tmp_path / "p.yaml").write_text(
            "version: 1\nname: p\nrules: [{name: r, then: accept}]\ntests:\n"
            "  - name: t\n    raw: x\n    recipients: [a@b.test]\n    expect: accept\n"
            "    expect_rules:\n      - r\n      - limit:max_recipent\n"
            "    expect_headers: {X-A: b}\n    expect_headers_absent:\n      - X-B\n      - x-a\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([tmp_path], check_samples=True)
    assert [(i.line, i.column, i.message.split(": ", 1)[1][:30])
            for i in refused.value.issues] == [
        (11, 9, "unknown limit 'max_recipent' i"),
        (15, 9, "header 'x-a' is expected in ex"),
    ]


def test_expecting_strip_attachment_tells_how_to() -> None:
    """A rule's then: strip_attachment reads as an action; a case expecting it was told
    the five actions alone, not how to expect a stripped attachment."""
    text = POLICY.replace("    expect: accept\n", "    expect: strip_attachment\n")
    assert [str(i) for i in check_policy_text("p", text)] == [
        "p:10:13: test 'CASE': expect: expected one of accept, reject, tempfail, discard, "
        "quarantine; "
        "got 'strip_attachment' (stripping is an edit, not the verdict's action: write "
        "expect: accept, and expect_stripped: [the file names])"]
