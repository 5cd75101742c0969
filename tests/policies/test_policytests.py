"""Running `tests:` sections: passing cases, and the exact problems of failing ones."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from postwarden_policies import PolicyLoadError, load_policy_set, policy_schema, run_policy_tests
from postwarden_policies.cli import build_parser
from postwarden_policies.errors import TEST_EXPECTATION_UNMET, TEST_SAMPLE_MISREAD, PolicyIssue
from postwarden_policies.headers import MAX_FIELDS
from postwarden_policies.loader import load_policy_set_from_sources

from .policy_helpers import said

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"

MESSAGE = (
    "From: a@b.test\\nSubject: Hi\\nContent-Type: text/plain\\n\\nhello AKIAIOSFODNN7EXAMPLE\\n"
)
POLICY = f"""version: 1
name: p
rules:
  - name: keys
    when: {{body: 'AKIA[0-9A-Z]{{16}}'}}
    then: reject
    message: No keys
  - name: tag
    then: {{add_header: {{X-T: "1"}}}}
tests:
  - name: CASE
    raw: "{MESSAGE}"
    sender: a@b.test
    recipients: [c@d.test]
"""


def outcome(expectations: str) -> tuple[bool, tuple[str, ...]]:
    text = POLICY + "".join(f"    {line}\n" for line in expectations.splitlines())
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    return result.passed, said(result.problems)


CASES = [
    pytest.param(
        "expect: reject\nexpect_rules: [keys]\nexpect_reply: '550 5.7.1 No keys'",
        True,
        (),
        id="pass",
    ),
    pytest.param("expect: accept", False, ("expected accept, got reject",), id="action"),
    pytest.param(
        "expect: reject\nexpect_rules: [tag]",
        False,
        ("expected rules [tag], got [keys]",),
        id="rules",
    ),
    pytest.param(
        "expect: reject\nexpect_reply: '554'",
        False,
        ("expected reply '554', got '550 5.7.1 No keys'",),
        id="reply",
    ),
    # A reply code alone, unquoted (YAML's integer), as the start of the reply.
    pytest.param("expect: reject\nexpect_reply: 550", True, (), id="reply-code"),
    pytest.param(
        "expect: reject\nexpect_reply: 451",
        False,
        ("expected reply '451', got '550 5.7.1 No keys'",),
        id="reply-code-differs",
    ),
    pytest.param(
        "expect: reject\nexpect_stripped: [a.exe]",
        False,
        ("expected stripped ['a.exe'], got []",),
        id="stripped",
    ),
    pytest.param(
        "expect: reject\nexpect_headers: {X-T: '1'}",
        False,
        ("expected header X-T: '1', got []",),
        id="headers-of-a-rejected-message",
    ),
]


@pytest.mark.parametrize(("expectations", "passed", "problems"), CASES)
def test_case_outcome(expectations: str, passed: bool, problems: tuple[str, ...]) -> None:
    assert outcome(expectations) == (passed, problems)


def test_headers_checked_on_the_delivered_message() -> None:
    text = POLICY.replace("    when: {body: 'AKIA[0-9A-Z]{16}'}\n", "    when: {body: NOPE}\n")
    text += "    expect: accept\n    expect_rules: [tag]\n    expect_headers: {x-t: '1'}\n"
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert result.problems == ()


def test_expected_headers_may_hold_any_text() -> None:
    text = (
        "version: 1\nname: p\nrules:\n  - name: tag\n    then: {subject_prefix: '[EXT] '}\n"
        "tests:\n  - name: c\n"
        '    raw: "From: a@b.test\\nSubject: =?utf-8?q?R=C3=A9union?=\\n\\nhi\\n"\n'
        "    recipients: [c@d.test]\n    expect: accept\n"
        "    expect_headers: {Subject: '[EXT] Réunion'}\n"
    )
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert result.problems == ()


def test_duplicate_flag_reaches_the_policy() -> None:
    text = POLICY.replace("when: {body: 'AKIA[0-9A-Z]{16}'}", "when: {duplicate: true}")
    text += "    duplicate: true\n    expect: reject\n    expect_rules: [keys]\n"
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert result.passed


@pytest.mark.parametrize(("given", "network", "address"), [
    pytest.param("[192.0.2.1]", "192.0.2.0/24", "192.0.2.1", id="bracketed"),
    pytest.param("IPv6:2001:db8::1", "2001:db8::/32", "2001:db8::1", id="ipv6-tag"),
    pytest.param("::ffff:192.0.2.1", "192.0.2.0/24", "192.0.2.1", id="v4-mapped"),
])
def test_a_case_takes_a_client_ip_as_eval_does(given: str, network: str, address: str) -> None:
    """A case's client_ip is read as the milter reads one, to the form eval --client-ip gives."""
    text = POLICY.replace("{body: 'AKIA[0-9A-Z]{16}'}", f"{{client_ip: ['{network}']}}")
    text += f"    client_ip: '{given}'\n    expect: reject\n    expect_rules: [keys]\n"
    policy_set = load_policy_set_from_sources([("p", text)])
    (result,) = run_policy_tests(policy_set)
    assert result.problems == ()
    (case,) = policy_set.policies[0].tests
    args = build_parser().parse_args(
        ["eval", "--policy", "p", "--from", "<>", "--to", "c@d.test", "--client-ip", given, "m"]
    )
    assert case.client_ip == args.client_ip == address


def test_each_file_is_tested_alone(tmp_path: Path) -> None:
    (tmp_path / "m.eml").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    strict = "version: 1\nname: strict\npriority: 1\nrules:\n  - name: all\n    then: reject\n"
    own = (
        "version: 1\nname: own\ntests:\n  - name: alone\n    message: m.eml\n"
        "    recipients: [a@b.test]\n    expect: accept\n    expect_rules: []\n"
    )
    (tmp_path / "a.yaml").write_text(strict)
    (tmp_path / "b.yaml").write_text(own)
    results = run_policy_tests(load_policy_set([tmp_path]))
    assert [(r.policy.name, r.case.name, r.passed) for r in results] == [("own", "alone", True)]


@pytest.mark.parametrize(("name", "written", "told"), [
    ("m.eml", "m.eml", "m.eml"),
    # On one line: a line break in its name would forge a report line of its own.
    ("m\nPASS q.yaml:1: fine.eml", '"m\\nPASS q.yaml:1: fine.eml"', "m\\nPASS q.yaml:1: fine.eml"),
])
def test_an_unreadable_message_fails_the_case(
    tmp_path: Path, name: str, written: str, told: str
) -> None:
    message = tmp_path / name
    message.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    (tmp_path / "p.yaml").write_text(
        f"version: 1\nname: p\ntests:\n  - name: c\n    message: {written}\n"
        "    recipients: [a@b.test]\n    expect: accept\n"
    )
    policy_set = load_policy_set([tmp_path])
    message.unlink()
    (result,) = run_policy_tests(policy_set)
    assert result.verdict is None
    assert said(result.problems) == (f"cannot read {tmp_path}/{told}: No such file or directory",)


@pytest.mark.parametrize("written", ["55", "0550", "5.5e2", "0x226", "600"])
def test_a_number_that_is_no_reply_code_is_refused_as_expect_reply(written: str) -> None:
    text = POLICY + f"    expect: reject\n    expect_reply: {written}\n"
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set_from_sources([("p", text)])
    (issue,) = raised.value.issues
    assert issue.message.endswith("expected a reply code from 200 to 599, or the start of a "
                                  f'reply as text ("550 5.7.1"), got {written}')


def test_the_schema_takes_a_reply_code_as_the_loader_does() -> None:
    document = yaml.safe_load(POLICY + "    expect: reject\n    expect_reply: 550\n")
    assert jsonschema.Draft202012Validator(policy_schema()).is_valid(document)


def test_example_policies_pass() -> None:
    results = run_policy_tests(load_policy_set([EXAMPLES]))
    assert len(results) == 21
    assert [r.problems for r in results if not r.passed] == []


REPORTED_LIMIT = """version: 1
name: p
mode: report
limits: {max_message_bytes: 10}
tests:
  - name: c
    raw: "Subject: hi\\n\\nhello world\\n"
    recipients: [a@b.test]
    expect: accept
    expect_rules: [RULE]
"""


def test_a_report_mode_policys_limit_can_be_expected() -> None:
    text = REPORTED_LIMIT.replace("RULE", "report:limit:max_message_bytes")
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert (result.passed, result.problems) == (True, ())


@pytest.mark.parametrize(("rule", "problem"), [
    ("limit:max_mesage_bytes", "unknown limit 'max_mesage_bytes' in 'limit:max_mesage_bytes'"),
    ("report:limit:max_mesage_bytes",
     "unknown limit 'max_mesage_bytes' in 'report:limit:max_mesage_bytes'"),
    ("limit:max_attachment_bytes", "limit:max_attachment_bytes names no rule"),
])
def test_a_limit_no_verdict_holds_is_refused_at_its_line_by_check(
    tmp_path: Path, rule: str, problem: str
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(REPORTED_LIMIT.replace("RULE", rule))
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([policy], check_samples=True)  # postwarden-policy check and test
    (issue,) = raised.value.issues
    assert (issue.line, issue.column) == (10, 20) and problem in issue.message
    # A milter loads the policies that filter mail whatever a test expects.
    assert load_policy_set([policy]).policies[0].name == "p"
    # An editor marks a misspelt name at once.
    document = yaml.safe_load(policy.read_text())
    valid = jsonschema.Draft202012Validator(policy_schema()).is_valid(document)
    assert valid is (rule == "limit:max_attachment_bytes")


@pytest.mark.parametrize("mode", ["enforce", "report"])
def test_the_parsers_cap_on_header_fields_can_be_expected(tmp_path: Path, mode: str) -> None:
    """A message past the parser's cap meets the structure limit as the rule
    ``limit:max_header_fields`` (docs), whatever is loaded: `check` takes that name, and
    the case passes."""
    (tmp_path / "m.eml").write_bytes(b"From: a@b.test\n" + b"X-A: y\n" * (MAX_FIELDS + 1)
                                     + b"\nhi\n")
    policy = tmp_path / "p.yaml"
    policy.write_text(f"version: 1\nname: p\nmode: {mode}\ntests:\n  - name: c\n"
                      "    message: m.eml\n    recipients: [a@b.test]\n    expect: reject\n"
                      "    expect_rules: ['limit:max_header_fields']\n")
    (result,) = run_policy_tests(load_policy_set([policy], check_samples=True))
    assert (result.passed, result.problems) == (True, ())
    document = yaml.safe_load(policy.read_text())
    assert jsonschema.Draft202012Validator(policy_schema()).is_valid(document)


def test_the_parsers_cap_on_header_fields_is_never_reported(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(REPORTED_LIMIT.replace("RULE", "'report:limit:max_header_fields'"))
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([policy], check_samples=True)
    (issue,) = raised.value.issues
    assert (issue.line, issue.column) == (10, 20)
    assert "max_header_fields is the parser's own cap, which no policy reports" in issue.message
    document = yaml.safe_load(policy.read_text())
    assert not jsonschema.Draft202012Validator(policy_schema()).is_valid(document)


def test_a_case_held_unexpectedly_says_why() -> None:
    """The hold reason (a rewrite that failed, say) was only in a log line on stderr,
    printed apart from the case, among those of every other case."""
    text = ("version: 1\nname: p\nrules:\n  - name: r\n    then: quarantine\n"
            "    message: Held for review\ntests:\n  - name: c\n    raw: x\n"
            "    recipients: [a@b.test]\n    expect: accept\n")
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert said(result.problems) == ("expected accept, got quarantine: Held for review",)


def test_a_raw_sample_of_one_line_is_a_warning_where_the_policies_filter_mail() -> None:
    """`check` and `test` refuse it; a milter (and an upload) loaded it without a word."""
    text = POLICY.replace(f'raw: "{MESSAGE}"', "raw: 'Subject: x\\n\\nhi'") + "    expect: reject\n"
    warnings: list[PolicyIssue] = []
    policy_set = load_policy_set_from_sources([("p", text)], warn=warnings.append)
    assert policy_set.policies[0].name == "p"  # a test's mistake never stops filtering
    [warning] = warnings
    assert (warning.line, warning.column, warning.code) == (12, 10, TEST_SAMPLE_MISREAD)
    assert warning.message.startswith("test 'CASE': raw is one line: its \\n are a backslash")


@pytest.mark.parametrize("mark", ["\\ufeff", "\\udcef\\udcbb\\udcbf"], ids=["character", "bytes"])
def test_a_raw_sample_starting_with_a_byte_order_mark_is_told(mark: str, tmp_path: Path) -> None:
    """Pasted from a file saved with one: the case tested a message with no header (flags
    no_headers, malformed) and passed if it expected what such a message gets."""
    text = POLICY.replace(f'raw: "{MESSAGE}', f'raw: "{mark}{MESSAGE}') + "    expect: accept\n"
    told = "test 'CASE': raw starts with a byte order mark (U+FEFF), which no mail starts with"
    warning, issue = _warned_and_refused(tmp_path, text)
    assert (warning.line, warning.code) == (12, TEST_SAMPLE_MISREAD)
    assert warning.message.startswith(told)
    assert (issue.line, issue.message.startswith(told)) == (12, True)


def test_an_expectation_no_verdict_can_meet_is_a_warning_where_the_policies_filter_mail(
    tmp_path: Path,
) -> None:
    """`check` and `test` refuse it; a milter (and an upload) loaded it without a word."""
    text = POLICY + ("    expect: reject\n    expect_stripped: [a.exe]\n"
                     "    expect_headers: {X-T: '1'}\n    expect_headers_absent: [X-Other, x-t]\n")
    warnings: list[PolicyIssue] = []
    load_policy_set_from_sources([("p", text)], warn=warnings.append)
    told = sorted((w.line, w.column, w.code, w.message) for w in warnings)
    refused = "test 'CASE': expect: reject delivers nothing: no message to hold or lack headers"
    both = "test 'CASE': header 'x-t' is expected in expect_headers too: no message can meet both"
    assert [(line, column, code) for line, column, code, _ in told] == [
        (16, 22, TEST_EXPECTATION_UNMET), (17, 21, TEST_EXPECTATION_UNMET),
        (18, 28, TEST_EXPECTATION_UNMET), (18, 38, TEST_EXPECTATION_UNMET)]
    assert [message.startswith(refused) for *_, message in told] == [True, True, True, False]
    assert told[-1][-1] == both
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyLoadError) as raised:  # check and test: the same, refused
        load_policy_set([tmp_path], check_samples=True)
    assert sorted((i.line, i.column, i.message) for i in raised.value.issues) == [
        (line, column, message) for line, column, _, message in told]


def test_a_folded_raw_sample_is_told(tmp_path: Path) -> None:
    """raw: > joined its lines with blanks (a blank line became the one line break): the
    case tested another message than the one written, without a word."""
    text = POLICY.replace(f'raw: "{MESSAGE}"', "raw: >\n      Subject: x\n\n      hi\n")
    text += "    expect: accept\n"
    told = "test 'CASE': raw is folded (>): YAML joins its lines with blanks"
    warning, issue = _warned_and_refused(tmp_path, text)
    assert (warning.line, warning.column, warning.code) == (12, 10, TEST_SAMPLE_MISREAD)
    assert warning.message.startswith(told)
    assert (issue.line, issue.message.startswith(told)) == (12, True)


def _warned_and_refused(tmp_path: Path, text: str) -> tuple[PolicyIssue, PolicyIssue]:
    """The one warning a milter's (an upload's) load of the policy ``text`` gives, and the
    one issue `check` and `test` refuse it with."""
    warnings: list[PolicyIssue] = []
    load_policy_set_from_sources([("p", text)], warn=warnings.append)
    [warning] = warnings
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([tmp_path], check_samples=True)
    [issue] = raised.value.issues
    return warning, issue


def test_expected_stripped_names_in_one_text_say_to_list_them() -> None:
    """`expect_stripped: "a.exe, b.exe"` is one file name (a name may hold a comma): the
    case failed with "expected stripped ['a.exe, b.exe'], got ['a.exe', 'b.exe']", not
    saying that a list holds each name as an item of its own."""
    part = ("--b\\nContent-Type: application/x-msdownload\\n"
            "Content-Disposition: attachment; filename={}\\n\\nMZ\\n")
    message = ("Content-Type: multipart/mixed; boundary=b\\n\\n--b\\nContent-Type: text/plain"
               f"\\n\\nhi\\n{part.format('a.exe')}{part.format('b.exe')}--b--\\n")
    text = ("version: 1\nname: p\nrules:\n  - name: s\n    when: {attachment: {content_type: "
            "application/x-msdownload}}\n    then: strip_attachment\ntests:\n  - name: t\n"
            f"    raw: \"{message}\"\n    recipients: [c@d.test]\n    expect: accept\n"
            "    expect_stripped: 'a.exe, b.exe'\n")
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    assert said(result.problems) == (
        "expected stripped ['a.exe, b.exe'], got ['a.exe', 'b.exe'] (several in one text: "
        "write each as an item of a list, as in [a, b])",)
