"""A mistake in one rule hides neither a repeated rule name nor an unknown expect_rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import PolicyLoadError, check_policy_text, load_policy_set

TEXT = """version: 1
name: p
rules:
  - name: a
    then: rejekt
  - name: b
    then: reject
  - name: b
    then: accept
tests:
  - name: t
    raw: x
    recipients: [a@b.test]
    expect: acept
    expect_rules: [a, nope]
"""


def test_every_issue_is_reported() -> None:
    assert [str(i) for i in check_policy_text("p.yaml", TEXT)] == [
        "p.yaml:5:11: rule 'a': then: expected one of accept, reject, tempfail, discard, "
        "quarantine, "
        "strip_attachment; got 'rejekt' (did you mean 'reject'?)",
        "p.yaml:14:13: test 't': expect: expected one of accept, reject, tempfail, discard, "
        "quarantine; "
        "got 'acept' (did you mean 'accept'?)",
        "p.yaml:8:11: duplicate rule name 'b' (first at line 6)",
        "p.yaml:15:23: test 't': unknown rule 'nope' in expect_rules",
    ]


def test_a_name_check_alone_refuses_the_policy(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TEXT.replace("rejekt", "reject").replace("acept", "accept"))
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([tmp_path], check_samples=True)
    assert [i.line for i in refused.value.issues] == [8, 15]


def test_a_duplicate_key_hides_nothing_else_of_its_mapping() -> None:
    text = ("version: 1\nname: p\nrules:\n  - name: r1\n    when: {subject: '(bad'}\n"
            "    then: reject\n    then: accept\n"
            "  - name: r2\n    when:\n      header: {Subject: '(bad2', subject: x}\n"
            "    then: rejct\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:7:5: rule 'r1': duplicate key 'then' (first defined at line 6)",
        "p.yaml:5:21: rule 'r1': when.subject: invalid RE2 regular expression '(bad': missing ): "
        "(bad",
        "p.yaml:10:34: rule 'r2': duplicate key 'subject' (first defined at line 10, column 16)",
        "p.yaml:10:25: rule 'r2': invalid RE2 regular expression '(bad2': missing ): (bad2",
        "p.yaml:11:11: rule 'r2': then: expected one of accept, reject, tempfail, discard, "
        "quarantine, strip_attachment; got 'rejct' (did you mean 'reject'?)",
    ]


def test_a_glob_re2_refuses_is_told_beside_a_malformed_one() -> None:
    text = ("version: 1\nname: p\nrules:\n  - name: r\n"
            "    when: {attachment: {filename: ['[abc', '[z-a]', '*.exe']}}\n"
            "    then: reject\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:5:36: rule 'r': invalid glob '[abc': '[' without a closing ']'",
        "p.yaml:5:44: rule 'r': invalid glob list '[z-a]': invalid character class range: z-a",
    ]


def test_code_and_message_are_checked_beside_an_error_in_the_rule() -> None:
    text = ("version: 1\nname: p\nrules:\n"
            "  - name: a\n    then: {action: reject, add_header: {X-A: b}}\n    code: 450\n"
            "  - name: b\n    when: {subject: '(x'}\n    then: accept\n    message: hi\n"
            "  - name: c\n    then: {action: rejct}\n    code: 450\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:5:40: rule 'a': add_header never applies with action reject: the message is "
        "not delivered",
        "p.yaml:6:11: rule 'a': reject needs a 5xx code, got 450",
        "p.yaml:8:21: rule 'b': when.subject: invalid RE2 regular expression '(x': missing ): (x",
        "p.yaml:10:14: rule 'b': message is only allowed with reject, tempfail or quarantine",
        # A misspelt action: whether 450 suits it is not known.
        "p.yaml:12:20: rule 'c': then.action: expected one of accept, reject, tempfail, discard, "
        "quarantine; "
        "got 'rejct' (did you mean 'reject'?)",
    ]


def test_a_case_s_sample_and_expectations_are_checked_beside_an_error_in_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\nname: p\ntests:\n"
        "  - name: gone\n    message: gone.eml\n    recipients: [nobody]\n    expect: accept\n"
        "  - name: both\n    raw: x\n    message: gone.eml\n    recipients: [a@b.test]\n"
        "    expect: acept\n"
        "  - name: refused\n    raw: x\n    recipients: [nobody]\n    expect: reject\n"
        "    expect_headers: {X-A: b}\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([tmp_path], check_samples=True)
    assert sorted((i.line, i.message.split(": ", 1)[1]) for i in refused.value.issues) == [
        (5, "message file not found: gone.eml"),
        (6, "expected an e-mail address, got 'nobody'"),
        (8, "give exactly one of message (a file) or raw (the message inline)"),
        (12, "expect: expected one of accept, reject, tempfail, discard, quarantine; got 'acept' "
             "(did you mean 'accept'?)"),
        (15, "expected an e-mail address, got 'nobody'"),
        (17, "expect: reject delivers nothing: no message to hold or lack headers, nor "
             "attachments stripped from it"),
    ]


def test_an_edit_wasted_on_a_refusal_is_told_beside_another_error_in_then() -> None:
    text = ("version: 1\nname: p\nrules:\n  - name: r\n"
            "    then: {action: discard, subject_prefix: x, notify: ['b d']}\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:5:57: rule 'r': expected a webhook endpoint name, got 'b d'",
        "p.yaml:5:45: rule 'r': subject_prefix never applies with action discard: the message "
        "is not delivered",
    ]


def test_every_unknown_rule_a_case_expects_is_told() -> None:
    text = ("version: 1\nname: p\nrules: [{name: r, then: accept}]\ntests:\n"
            "  - {name: t, raw: x, recipients: [a@b.test], expect: accept,\n"
            "     expect_rules: [nope, r, report:gone, nope]}\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:6:21: test 't': unknown rule 'nope' in expect_rules",
        "p.yaml:6:30: test 't': unknown rule 'report:gone' in expect_rules",
    ]


def test_every_expectation_no_verdict_can_meet_is_told(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\nname: p\ntests:\n  - name: t\n    raw: x\n    recipients: [a@b.test]\n"
        "    expect: reject\n    expect_rules: ['limit:max_recipient', 'limit:max_part']\n"
        "    expect_headers: {X-A: b}\n    expect_headers_absent: [x-a]\n"
        "    expect_stripped: []\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([tmp_path], check_samples=True)
    assert [(i.line, i.message.split(": ", 1)[1][:40]) for i in refused.value.issues] == [
        (8, "unknown limit 'max_recipient' in 'limit:"),
        (8, "unknown limit 'max_part' in 'limit:max_p"),
        (9, "expect: reject delivers nothing: no mess"),
        (10, "expect: reject delivers nothing: no mess"),
        (11, "expect: reject delivers nothing: no mess"),
        (10, "header 'x-a' is expected in expect_heade"),
    ]


def test_each_header_or_scheme_refused_in_a_list_is_told_at_its_place() -> None:
    text = ("version: 1\nname: p\nsanitize:\n  allowed_url_schemes: [https, VBScript, javascript]\n"
            "rules:\n  - name: r\n    then:\n      remove_header:\n        - Content-Type\n"
            "        - X-Spam\n        - MIME-Version\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:4:32: URL scheme vbscript can never be allowed",
        "p.yaml:4:42: URL scheme javascript can never be allowed",
        "p.yaml:9:11: rule 'r': Content-Type cannot be removed: it defines how the body is read",
        "p.yaml:11:11: rule 'r': MIME-Version cannot be removed: it defines how the body is read",
    ]


def test_limits_when_without_a_limit_is_told_beside_an_error_in_the_condition() -> None:
    text = "version: 1\nname: p\nlimits:\n  when: {sender: [nobody]}\n"
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:4:19: expected an e-mail address, got 'nobody'",
        "p.yaml:4:9: when without a limit to apply it to (add one, or remove when)",
    ]
