"""`limits: when:`: a policy's limits apply only to the transactions its condition holds
for, read from what is known at MAIL FROM; the set's limits for a transaction combine
those that apply, the strictest winning."""

from __future__ import annotations

from dataclasses import replace

import pytest

from postwarden_policies import (
    AttachmentStripped,
    DeleteRecipient,
    Envelope,
    PolicyLoadError,
    PolicySet,
    Quarantine,
    Reject,
    evaluate_message,
    load_policy_set_from_sources,
    run_policy_tests,
)
from postwarden_policies.loader import check_policy_text
from postwarden_policies.model import StructureAction

INBOUND = "version: 1\nname: inbound\nlimits: {max_recipients: 100}\n"
OUTBOUND = """\
version: 1
name: outbound
limits:
  when:
    any:
      - authenticated: true
      - client_ip: [10.0.0.0/8]
  max_recipients: 50
"""
ANONYMOUS = Envelope("a@elsewhere.test", client_ip="192.0.2.1")
SIGNED_IN = Envelope("a@example.com", client_ip="192.0.2.1", auth_user="alice")
INTERNAL = Envelope("a@example.com", client_ip="10.1.2.3")
ALLOWED = ("sender, sender_domain, client_ip, client_name, helo, authenticated, auth_user, "
           "any, all, not")


def both(*extra: tuple[str, str]) -> PolicySet:
    """INBOUND and OUTBOUND, and ``extra`` (label, text) sources."""
    return load_policy_set_from_sources([("in.yaml", INBOUND), ("out.yaml", OUTBOUND), *extra])


def limited(limits: str) -> str:
    """A policy whose limits (YAML flow mapping entries) apply to authenticated mail."""
    return f"version: 1\nname: scoped\nlimits: {{when: {{authenticated: true}}, {limits}}}\n"


def test_every_envelope_key_loads_and_nests() -> None:
    text = """\
version: 1
name: t
limits:
  when:
    sender: [a@example.com, "<>"]
    sender_domain: example.com
    client_name: "*.example.com"
    helo: mx.example.com
    authenticated: true
    auth_user: alice
    all:
      - not: {client_ip: 192.0.2.0/24}
      - any: [{helo: a.example}, {sender_domain: .example.org}]
  max_recipients: 5
"""
    assert check_policy_text("t.yaml", text) == []


@pytest.mark.parametrize("key, value", [
    ("recipient", "b@example.com"), ("recipient_domain", "example.com"),
    ("from", "a@example.com"), ("subject", "x"), ("body", "x"), ("size_over", 10),
    ("has_html", "true"), ("duplicate", "true"), ("flag", "malformed"),
    ("header", "{X-A: b}"), ("attachment", "{filename: '*.exe'}"),
])
def test_a_key_not_known_at_mail_from_is_refused_at_its_line(key: str, value: object) -> None:
    text = f"version: 1\nname: t\nlimits:\n  when:\n    {key}: {value}\n  max_recipients: 5\n"
    assert [str(i) for i in check_policy_text("t.yaml", text)] == [
        f"t.yaml:5:5: unknown key {key!r} in limits condition (what is known at MAIL FROM); "
        f"expected one of: {ALLOWED}"
    ]


def test_a_key_nested_in_any_or_not_is_refused_too() -> None:
    text = """\
version: 1
name: t
limits:
  when:
    any:
      - authenticated: true
      - not: {subject: x}
  max_recipients: 5
"""
    [issue] = check_policy_text("t.yaml", text)
    assert (issue.line, issue.column) == (7, 15)
    assert "unknown key 'subject' in limits condition" in issue.message


def test_an_empty_when_is_refused() -> None:
    text = "version: 1\nname: t\nlimits:\n  when: {}\n  max_recipients: 5\n"
    assert [str(i) for i in check_policy_text("t.yaml", text)] == [
        "t.yaml:4:9: an empty condition holds for every message; leave 'when' out to mean that"
    ]


def test_a_when_without_a_limit_is_refused() -> None:
    text = "version: 1\nname: t\nlimits:\n  when: {authenticated: true}\n"
    assert [str(i) for i in check_policy_text("t.yaml", text)] == [
        "t.yaml:4:9: when without a limit to apply it to (add one, or remove when)"
    ]


def test_the_error_names_the_file_as_loading_does() -> None:
    with pytest.raises(PolicyLoadError, match=r"out\.yaml:5:5: unknown key 'recipient'"):
        load_policy_set_from_sources(
            [("out.yaml", "version: 1\nname: t\nlimits:\n  when:\n    recipient: a@b.test\n")])


def test_scoped_limits_apply_only_where_their_when_holds() -> None:
    policy_set = both()
    assert policy_set.limits_for(ANONYMOUS).max_recipients == 100
    assert policy_set.limits_for(SIGNED_IN).max_recipients == 50
    assert policy_set.limits_for(INTERNAL).max_recipients == 50
    assert policy_set.limits.max_recipients == 100  # what every transaction gets


EACH_KEY = """\
version: 1
name: each
limits:
  when:
    any:
      - sender: [a@example.com]
      - client_ip: [10.0.0.0/8]
      - client_name: [relay.example.com]
      - helo: [relay.example.com]
      - auth_user: [alice]
  max_recipients: 5
"""


@pytest.mark.parametrize("change", [
    {"sender": "a@example.com"}, {"client_ip": "10.1.2.3"}, {"client_name": "relay.example.com"},
    {"helo": "relay.example.com"}, {"auth_user": "alice"},
])
def test_an_answer_is_remembered_only_for_the_same_envelope_facts(
    change: dict[str, str]
) -> None:
    """limits_for remembers its answers: two envelopes one fact apart, asked in either
    order of one policy set, each get their own."""
    policy_set = load_policy_set_from_sources([("in.yaml", INBOUND), ("each.yaml", EACH_KEY)])
    plain = Envelope("b@elsewhere.test", client_ip="192.0.2.1", client_name="mx.elsewhere.test",
                     helo="mx.elsewhere.test")
    scoped = replace(plain, **change)
    for _ in range(2):
        assert policy_set.limits_for(plain).max_recipients == 100
        assert policy_set.limits_for(scoped).max_recipients == 5
    assert policy_set.limits_for(replace(plain, recipients=("x@example.net",))) \
        .max_recipients == 100  # recipients are no fact a `when` reads


def test_remembered_answers_are_bounded() -> None:
    policy_set = both()
    for n in range(5000):
        assert policy_set.limits_for(
            replace(ANONYMOUS, sender=f"a{n}@elsewhere.test")).max_recipients == 100
    assert policy_set.limits_for(SIGNED_IN).max_recipients == 50
    assert len(policy_set._scoped) <= 1024


def test_without_when_every_transaction_gets_the_set_limits_as_they_are() -> None:
    policy_set = load_policy_set_from_sources([("in.yaml", INBOUND)])
    assert policy_set.scoped_limits == ()
    assert policy_set.limits_for(SIGNED_IN) is policy_set.limits


def test_a_looser_scoped_limit_loosens_nothing() -> None:
    policy_set = both(("loose.yaml", limited("max_recipients: 500")))
    assert policy_set.limits_for(SIGNED_IN).max_recipients == 50
    assert policy_set.limits_for(ANONYMOUS).max_recipients == 100


def test_on_structure_limit_combines_among_the_policies_that_apply() -> None:
    policy_set = both(("q.yaml", limited("on_structure_limit: quarantine")))
    assert policy_set.limits_for(SIGNED_IN).on_structure_limit is StructureAction.QUARANTINE
    assert policy_set.limits_for(ANONYMOUS).on_structure_limit is StructureAction.REJECT
    rejecting = "version: 1\nname: r\nlimits: {on_structure_limit: reject}\n"
    policy_set = both(("q.yaml", limited("on_structure_limit: quarantine")), ("r.yaml", rejecting))
    assert policy_set.limits_for(SIGNED_IN).on_structure_limit is StructureAction.REJECT


RAW = ("From: a@example.com\r\nSubject: s\r\n\r\n" + "x" * 500 + "\r\n").encode()


def test_the_engine_refuses_by_the_transactions_own_message_size() -> None:
    policy_set = both(("size.yaml", limited("max_message_bytes: 100")))
    refused = evaluate_message(policy_set, RAW, SIGNED_IN)
    assert isinstance(refused.decision, Reject) and refused.rules == ("limit:max_message_bytes",)
    assert evaluate_message(policy_set, RAW, ANONYMOUS).action.value == "accept"


def test_the_engine_removes_recipients_by_the_transactions_own_limit() -> None:
    recipients = tuple(f"r{n}@example.net" for n in range(60))
    signed_in = evaluate_message(both(), RAW, replace(SIGNED_IN, recipients=recipients))
    assert signed_in.rules == ("limit:max_recipients",)
    assert [e.address for e in signed_in.edits if isinstance(e, DeleteRecipient)] == list(
        recipients[50:])
    anonymous = evaluate_message(both(), RAW, replace(ANONYMOUS, recipients=recipients))
    assert anonymous.rules == () and anonymous.edits == ()


ATTACHED = (
    b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
    b'filename="a.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    + b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n"
    + b"--b--\r\n"
)


def test_the_engine_strips_attachments_by_the_transactions_own_limit() -> None:
    policy_set = both(("att.yaml", limited("max_attachment_bytes: 10")))
    stripped = evaluate_message(policy_set, ATTACHED, SIGNED_IN)
    assert [(c.filename, c.reason) for c in stripped.changes
            if isinstance(c, AttachmentStripped)] == [("a.bin", "max_attachment_bytes")]
    assert evaluate_message(policy_set, ATTACHED, ANONYMOUS).changes == ()


PARTS = (
    b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    + b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % n for n in range(6))
    + b"--b--\r\n"
)


def test_the_parser_caps_and_structure_verdict_follow_the_envelope() -> None:
    scoped = limited("max_mime_parts: 3, on_structure_limit: quarantine")
    policy_set = both(("parts.yaml", scoped))
    assert policy_set.parser_caps(SIGNED_IN) == (3, 100)
    assert policy_set.parser_caps(ANONYMOUS) == (1000, 100)
    held = evaluate_message(policy_set, PARTS, SIGNED_IN)
    assert held.decision == Quarantine("limit max_mime_parts")
    assert evaluate_message(policy_set, PARTS, ANONYMOUS).action.value == "accept"


TRIAL = """\
version: 1
name: trial
mode: report
limits: {when: {authenticated: true}, max_recipients: 1}
"""


def test_a_report_mode_policys_limits_are_checked_only_where_its_when_holds() -> None:
    policy_set = load_policy_set_from_sources([("trial.yaml", TRIAL)])
    two = ("b@example.net", "c@example.net")
    signed_in = evaluate_message(policy_set, RAW, replace(SIGNED_IN, recipients=two))
    assert signed_in.rules == ("report:limit:max_recipients",) and signed_in.edits == ()
    anonymous = evaluate_message(policy_set, RAW, replace(ANONYMOUS, recipients=two))
    assert anonymous.rules == ()
    assert policy_set.limits_for(SIGNED_IN).max_recipients is None  # never enforced


BIG = "Subject: s\\n\\n" + "x" * 120 + "\\n"  # the YAML escapes of a 130-byte message
CASES = f"""\
version: 1
name: submission
limits:
  when: {{authenticated: true}}
  max_message_bytes: 100
tests:
  - name: signed-in-mail-is-capped
    raw: "{BIG}"
    recipients: b@example.net
    auth_user: alice
    expect: reject
    expect_rules: [limit:max_message_bytes]
  - name: anonymous-mail-is-not
    raw: "{BIG}"
    recipients: b@example.net
    expect: accept
"""


def test_policy_test_cases_take_the_envelope_from_the_case() -> None:
    results = run_policy_tests(load_policy_set_from_sources([("s.yaml", CASES)]))
    assert [(r.case.name, r.problems) for r in results] == [
        ("signed-in-mail-is-capped", ()), ("anonymous-mail-is-not", ()),
    ]
