"""Traps in the policy language as teams write it: values that load but do not mean what
an author who knows Postfix expects."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from postwarden_policies import (
    PolicyIssue,
    load_policy_set,
    load_policy_set_from_sources,
)
from postwarden_policies.cli import main
from postwarden_policies.loader import check_policy_text

from .test_language_review import HEAD, issues, schema_takes


@pytest.mark.parametrize(("limit", "value", "meaning"), [
    ("max_message_bytes", "0", "refuse every message"),
    ("max_message_bytes", '"0MB"', "refuse every message"),
    ("max_message_bytes", "0.0", "refuse every message"),
    ("max_attachment_bytes", '" 00 KiB"', "strip every attachment"),
])
def test_a_size_limit_of_0_is_refused_not_read_as_none(limit: str, value: str,
                                                       meaning: str) -> None:
    # Postfix's message_size_limit = 0 is no limit; a policy's refused every message (552).
    text = HEAD + f"limits:\n  {limit}: {value}\n"
    assert issues(text) == [
        f"p.yaml:4:{len(limit) + 5}: limits.{limit}: 0 would {meaning}: leave the limit out "
        "for none"]
    assert not schema_takes(text)


@pytest.mark.parametrize("value", ["1", '"1KB"', '"10 MiB"', '"0100"'])
def test_a_size_limit_above_0_loads(value: str) -> None:
    text = HEAD + f"limits: {{max_message_bytes: {value}, max_attachment_bytes: {value}}}\n"
    assert issues(text) == []
    assert schema_takes(text)


def test_a_size_condition_of_0_still_means_any_content() -> None:
    text = HEAD + "rules: [{name: r, when: {size_over: 0}, then: reject}]\n"
    assert issues(text) == []
    assert schema_takes(text)


ANCHORED = HEAD + """\
x-common:
  internal: &internal {sender_domain: [example.com, example.org]}
  refusal: &refusal "Not accepted here"
rules:
  - name: outside
    when: {not: *internal}
    then: reject
    message: *refusal
"""


def test_top_level_x_keys_hold_anchors_and_are_ignored() -> None:
    # As docker compose's extension fields: anchors need a place before their first use.
    policy_set = load_policy_set_from_sources([("p.yaml", ANCHORED)])
    (rule,) = policy_set.policies[0].rules
    assert rule.reply is not None and "Not accepted here" in str(rule.reply)
    assert schema_takes(ANCHORED)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(HEAD + "common: &c 1\n", "p.yaml:3:1: unknown key 'common' in policy",
                 id="no-prefix"),
    pytest.param(HEAD + "rules: [{name: r, then: accept, x-note: 1}]\n",
                 "p.yaml:3:33: rule 'r': unknown key 'x-note' in rule", id="not-top-level"),
    pytest.param(HEAD + "x-base: &b {mode: report}\n<<: *b\n",
                 "p.yaml:4:1: YAML merge keys (<<) are not supported", id="merge-key"),
])
def test_other_unknown_keys_and_merge_keys_stay_refused(text: str, expected: str) -> None:
    (issue,) = issues(text)
    assert issue.startswith(expected)


def test_the_schema_takes_x_keys_at_the_top_level_only() -> None:
    assert not schema_takes(HEAD + "common: 1\n")
    assert not schema_takes(HEAD + "rules: [{name: r, then: accept, x-note: 1}]\n")


def warnings_of(text: str) -> list[str]:
    """The warnings of one source that loads."""
    found: list[PolicyIssue] = []
    load_policy_set_from_sources([("p.yaml", text)], warn=found.append)
    return [str(warning) for warning in found]


RULE = HEAD + "rules:\n  - name: r\n"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(RULE + "    then: reject\n    message: Ticket #12\n",
                 "p.yaml:6:14: rule 'r': message: 'Ticket' ends where '#12' starts", id="message"),
    pytest.param(RULE + "    then:\n      add_header: {X-Tag: spam #1\n        }\n",
                 "p.yaml:6:27: rule 'r': 'spam' ends where '#1' starts", id="header-value"),
    pytest.param(RULE + "    then:\n      notify: ops #page\n",
                 "p.yaml:6:15: rule 'r': then.notify: 'ops' ends where '#page' starts",
                 id="list-of-one"),
    pytest.param(HEAD + "x-common:\n  refusal: &m Ticket #12\n"
                 "rules:\n  - {name: r, then: reject,\n     message: *m}\n",
                 "p.yaml:7:15: rule 'r': message: 'Ticket' ends where '#12' starts", id="anchored"),
])
def test_a_value_a_comment_cut_short_is_a_warning(text: str, expected: str) -> None:
    # YAML ends an unquoted value at " #": the reply said "Ticket", not "Ticket #12".
    [warning] = warnings_of(text)
    assert warning.startswith(expected + " a YAML comment: quote the whole value if ")


def test_a_long_value_a_comment_cut_short_is_told_by_its_end() -> None:
    text = RULE + "    description: " + "word " * 100 + "ends #3\n    then: accept\n"
    [warning] = warnings_of(text)
    assert ("rule 'r': description: '...rd word word word word word word ends' ends where "
            "'#3'") in warning


def test_check_prints_a_value_a_comment_cut_short_as_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(RULE + "    then: reject\n    message: Ticket #12\n", encoding="utf-8")
    assert main(["check", str(tmp_path)]) == 0
    _, err = capsys.readouterr()
    assert err.startswith(f"{policy}:6:14: warning: rule 'r': message: 'Ticket' ends "
                          "where '#12' starts")


def test_a_milter_loading_its_policy_dir_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "p.yaml").write_text(RULE + "    then: reject\n    message: Ticket #12\n",
                                     encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        load_policy_set([tmp_path])  # as the milter loads policy_dir
    assert "p.yaml:6:14: rule 'r': message: 'Ticket' ends where '#12' starts" in caplog.text


@pytest.mark.parametrize("line", [
    "message: Spam  # the helpdesk knows this one",
    "message: Ticket#12",
    "message: 'Ticket #12'",
    'message: "Ticket #12"',
    "message: Ticket  \\#12",
    "message: >-\n      Ticket #12",
])
def test_a_comment_written_as_one_or_a_quoted_hash_warns_of_nothing(line: str) -> None:
    text = RULE + "    then: reject\n    " + line + "\n"
    assert warnings_of(text) == []


@pytest.mark.parametrize(("when", "told"), [
    ("{subjct: x}", "unknown key 'subjct' in condition (did you mean 'subject'?); expected"),
    ("{Subject: x}", "unknown key 'Subject' in condition (did you mean 'subject'?); expected"),
    ("{attachment: {filname: '*.exe'}}",
     "unknown key 'filname' in attachment condition (did you mean 'filename'?); expected"),
    ("{flag: [malformd]}", "got 'malformd' (did you mean 'malformed'?)"),
    ("{xyzzy: 1}", "unknown key 'xyzzy' in condition; expected"),
])
def test_a_misspelt_name_is_told_what_it_likely_meant(when: str, told: str) -> None:
    """A key or value among twenty or thirty is hard to spot in the list of them all."""
    (issue,) = issues(HEAD + f"rules:\n  - name: r\n    when: {when}\n    then: reject\n")
    assert told in issue


@pytest.mark.parametrize(("rule", "told"), [
    ("{name: r, wehn: {sender: [a@b.test]}, then: reject}",
     "'wehn' in rule (did you mean 'when'?)"),
    ("{name: r, tehn: reject}", "'tehn' in rule (did you mean 'then'?)"),
])
def test_two_letters_swapped_in_a_short_name_are_told_what_they_likely_meant(
    rule: str, told: str
) -> None:
    """The commonest typo of the shortest keys, which difflib finds only 0.75 alike."""
    assert any(told in issue for issue in issues(HEAD + f"rules:\n  - {rule}\n"))


def test_a_misspelt_action_is_told_what_it_likely_meant() -> None:
    (issue,) = issues(HEAD + "rules:\n  - {name: r, then: Rejct}\n")
    assert issue.endswith("got 'Rejct' (did you mean 'reject'?)")


@pytest.mark.parametrize(("rule", "at"), [
    ("  - name: r\n    then:\n", "5:10: rule 'r': then"),
    ("  - name: r\n    then: reject\n    message:\n", "6:13: rule 'r': message"),
])
def test_a_key_left_without_a_value_is_not_told_to_quote_it(rule: str, at: str) -> None:
    """Quoting nothing gives "", no more a value: the hint fits a number or a boolean."""
    (issue,) = issues(HEAD + "rules:\n" + rule)
    assert issue.startswith(f"p.yaml:{at}: expected ")
    assert issue.endswith(", got null")


@pytest.mark.parametrize(("text", "told"), [
    ("rules:\n  - name: r\n    then: {action: reject, message: No}\n",
     "unknown key 'message' in then (message goes in the rule, beside then:)"),
    ("rules:\n  - name: r\n    notify: [ops]\n    then: quarantine\n",
     "unknown key 'notify' in rule (notify goes under then:, as in then: {action: "
     "quarantine, notify: [...]})"),
    ("rules:\n  - name: r\n    when: {filename: ['*.exe']}\n    then: reject\n",
     "unknown key 'filename' in condition (filename goes under attachment:, as in "
     "attachment: {filename: [...]})"),
    ("rules:\n  - name: r\n    when:\n      sender: [a@b.test]\n      then: reject\n",
     "unknown key 'then' in condition (then goes in the rule, indented as when: is)"),
    ("rules:\n  - name: r\n    when:\n    sender_domain: [b.test]\n    then: reject\n",
     "unknown key 'sender_domain' in rule (sender_domain goes under when:, indented past it)"),
    ("max_recipients: 50\n", "unknown key 'max_recipients' in policy (max_recipients goes "
     "under limits:)"),
    ("html: true\n", "unknown key 'html' in policy (html goes under sanitize:)"),
])
def test_a_key_one_level_off_is_told_where_it_goes(text: str, told: str) -> None:
    """The list of the keys a mapping takes does not say where a key it lacks belongs."""
    assert any(f"{told}; expected one of:" in issue for issue in issues(HEAD + text))


@pytest.mark.parametrize(("expected", "told"), [
    ("block-exes", "unknown rule 'block-exes' in expect_rules (did you mean 'block-exe'?)"),
    ("report:Block-Exe",
     "unknown rule 'report:Block-Exe' in expect_rules (did you mean 'report:block-exe'?)"),
    ("other", "unknown rule 'other' in expect_rules"),
])
def test_a_misspelt_rule_a_case_expects_is_told_what_it_likely_meant(
    expected: str, told: str
) -> None:
    text = (HEAD + "rules:\n  - {name: block-exe, then: reject}\ntests:\n"
            "  - {name: c, raw: x, recipients: [a@b.test], expect: reject,\n"
            f"     expect_rules: ['{expected}']}}\n")
    (issue,) = [str(i) for i in check_policy_text("p.yaml", text) if "unknown rule" in str(i)]
    assert issue.endswith(told)


@pytest.mark.parametrize(("then", "column", "ours"), [
    ("then: DEFER", 11, "tempfail"), ("then: hold", 11, "quarantine"),
    ("then: {action: deny}", 20, "reject"), ("then: drop", 11, "discard"),
    ("then: OK", 11, "accept"),
])
def test_another_filters_action_name_is_told_as_ours(then: str, column: int,
                                                     ours: str) -> None:
    """Postfix's access tables write DEFER, HOLD, OK: refused naming the actions alone,
    which left an author to guess which one each is."""
    text = f"version: 1\nname: p\nrules:\n  - name: a\n    {then}\n"
    [issue] = check_policy_text("p.yaml", text)
    assert (issue.line, issue.column) == (5, column)
    assert issue.message.endswith(f"(postwarden calls it {ours})")


@pytest.mark.parametrize(("line", "told"), [
    ("priority: '10'", "3:11: priority: expected an integer, got the string '10' (quoted, it "
                       "is text: "
                       "write 10 without quotes)"),
    ("tag_flags: \"false\"", "3:12: tag_flags: expected true or false, got the string 'false' "
                             "(quoted, "
                             "it is text: write false without quotes)"),
])
def test_a_quoted_number_or_boolean_says_to_unquote_it(line: str, told: str) -> None:
    """"got the string '10'" did not say that the quotes were all that was wrong."""
    assert [str(i) for i in check_policy_text("p.yaml", f"version: 1\nname: p\n{line}\n")] == [
        f"p.yaml:{told}"]


@pytest.mark.parametrize(("line", "column"), [
    ("    when: {header: {'X-Spam:': 'yes'}}\n    then: reject\n", 21),
    ("    then: {add_header: {'X-Spam:': 'yes'}}\n", 25),
    ("    then: {remove_header: ['X-Spam:']}\n", 28),
])
def test_a_header_name_with_its_colon_says_to_leave_it_out(line: str, column: int) -> None:
    """Copied from a message as "X-Spam:", it was "expected a header name, got 'X-Spam:'"."""
    text = f"version: 1\nname: p\nrules:\n  - name: a\n{line}"
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        f"p.yaml:5:{column}: rule 'a': expected a header name, got 'X-Spam:' (the name "
        "without its colon)"]


@pytest.mark.parametrize(("text", "where", "told"), [
    ("rules:\n  - name: a\n    when: {sender: ['<a@b.test>']}\n    then: reject\n", "5:21",
     "rule 'a': expected an e-mail address, got '<a@b.test>'"),
    ("tests:\n  - name: t\n    raw: \"Subject: x\\n\\nhi\\n\"\n    recipients: a@b.test\n"
     "    sender: Ann <a@b.test>\n    expect: accept\n", "7:13",
     "test 't': sender: expected an e-mail address or <>, got 'Ann <a@b.test>'"),
])
def test_an_address_with_its_angle_brackets_says_to_write_it_alone(
    text: str, where: str, told: str
) -> None:
    """Copied from a message's From: as "<a@b.test>", it was only "expected an e-mail
    address", not saying the brackets (or the name) were what was wrong."""
    assert [str(i) for i in check_policy_text("p.yaml", f"version: 1\nname: p\n{text}")] == [
        f"p.yaml:{where}: {told} (the address alone, without angle brackets: 'a@b.test')"]


@pytest.mark.parametrize(("then", "where", "told"), [
    ("reject\n    message: |\n      Go away\n", "6:14",
     "message: expected one line of printable ASCII"),
    ("\n      add_header:\n        X-A: >\n          hello\n", "7:14",
     "expected one line of printable ASCII"),  # a header's value: no key path
    ("\n      subject_prefix: |\n        [EXT]\n", "6:23",
     "then.subject_prefix: expected printable ASCII"),
])
def test_a_text_refused_for_its_blocks_line_break_says_so(
    then: str, where: str, told: str
) -> None:
    """A reply text or header written as a block (message: |) was "expected one line of
    printable ASCII, got 'Go away\\n'", not saying that the block's line break was all."""
    text = f"version: 1\nname: p\nrules:\n  - name: a\n    then: {then}"
    [issue] = [str(i) for i in check_policy_text("p.yaml", text)]
    assert issue.startswith(f"p.yaml:{where}: rule 'a': {told}, got '")
    assert issue.endswith("\\n' (but for the line break at its end, which a block, | or >, "
                          "keeps: write |- or >-)")


SEVERAL = " (several in one text: write each as an item of a list, as in [a, b])"


@pytest.mark.parametrize(("when", "column", "told"), [
    ("{sender_domain: ['@example.com']}", 28,  # a list's item: no key path
     "expected a domain such as example.com or .example.com, got '@example.com' (the domain "
     "without its @)"),
    ("{recipient_domain: 'example.com, example.org'}", 30,
     "when.recipient_domain: expected a domain such as example.com or .example.com, got "
     f"'example.com, example.org'{SEVERAL}"),
    ("{sender: 'a@b.test; c@d.test'}", 20,
     f"when.sender: expected an e-mail address, got 'a@b.test; c@d.test'{SEVERAL}"),
    ("{recipient_domain: '*example.com'}", 30,
     "when.recipient_domain: expected a domain such as example.com or .example.com, got "
     "'*example.com' (no glob here: write "
     "'example.com' for the domain itself, '.example.com' for its subdomains, both for all)"),
])
def test_a_list_item_written_as_a_message_or_a_list_shows_it_says_so(
    when: str, column: int, told: str
) -> None:
    """"expected a domain ..., got '@example.com'" did not say the @ was all that was
    wrong, nor, of two in one text, that a list holds each as an item of its own."""
    text = f"version: 1\nname: p\nrules:\n  - name: a\n    when: {when}\n    then: reject\n"
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        f"p.yaml:5:{column}: rule 'a': {told}"]


def test_a_tests_recipients_in_one_text_says_to_list_them() -> None:
    text = ("version: 1\nname: p\ntests:\n  - name: t\n    raw: \"Subject: x\\n\\nhi\\n\"\n"
            "    recipients: a@b.test, c@d.test\n    expect: accept\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:6:17: test 't': recipients: expected an e-mail address, got 'a@b.test, "
        f"c@d.test'{SEVERAL}"]


DASH = (" (each item of the list starts with '- ' before its first key; in flow style, "
        "[{...}, {...}])")


@pytest.mark.parametrize(("text", "where", "prefix"), [
    ("rules:\n  name: r\n  then: reject\n", "4:3", ""),
    ("tests:\n  name: t\n  raw: 'x'\n  recipients: [a@b.test]\n  expect: accept\n", "4:3", ""),
    ("rules:\n  - name: r\n    when:\n      any: {subject: a, body: b}\n    then: reject\n",
     "6:12", "rule 'r': "),
])
def test_a_list_of_mappings_written_without_its_dashes_says_so(
    text: str, where: str, prefix: str
) -> None:
    """"expected a list, got a mapping" did not say that the '- ' was what was missing."""
    assert [str(i) for i in check_policy_text("p.yaml", f"version: 1\nname: p\n{text}")] == [
        f"p.yaml:{where}: {prefix}expected a list, got a mapping{DASH}"]


@pytest.mark.parametrize(("text", "where", "prefix"), [
    ("rules:\n  - name: r\n    then: {action: quarantine, notify: 'soc, ops'}\n", "5:40",
     "rule 'r': then.notify: "),
    ("tests:\n  - name: t\n    raw: \"Subject: x\\n\\nhi\\n\"\n    recipients: [a@b.test]\n"
     "    expect: accept\n    expect_notify: soc, ops\n", "8:20", "test 't': expect_notify: "),
])
def test_webhook_endpoints_in_one_text_say_to_list_them(text: str, where: str,
                                                        prefix: str) -> None:
    """notify: and expect_notify: "soc, ops" was "expected a webhook endpoint name", not
    saying that a list holds each endpoint as an item of its own."""
    assert [str(i) for i in check_policy_text("p.yaml", f"version: 1\nname: p\n{text}")] == [
        f"p.yaml:{where}: {prefix}expected a webhook endpoint name, got 'soc, ops'{SEVERAL}"]


@pytest.mark.parametrize("then", ["{subject_prefix: [EXT]}", "{add_header: {X-Tag: [EXT]}}"])
def test_text_written_in_brackets_unquoted_is_told_to_be_quoted(then: str) -> None:
    """`subject_prefix: [EXT]`, the tag the docs show, is a YAML list of one unquoted."""
    (issue,) = issues(HEAD + f"rules:\n  - name: r\n    then: {then}\n")
    assert issue.endswith("got a sequence (YAML reads [EXT] unquoted as a list: quote it, "
                          "as in '[EXT]')")
