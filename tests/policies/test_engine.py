"""The engine: decisions, accumulated edits, limits, report mode and failure handling."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest

from postwarden_policies import (
    Accept,
    AddHeader,
    AttachmentStripped,
    ChangeHeader,
    DeleteRecipient,
    Discard,
    Envelope,
    HtmlSanitized,
    MessageFacts,
    PolicySet,
    Quarantine,
    Reject,
    RemoveHeader,
    ReplaceBody,
    Reply,
    SmtpReply,
    TempFail,
    Verdict,
    apply_edits,
    engine,
    evaluate,
    evaluate_message,
    load_policy_set_from_sources,
    parse_message,
)
from postwarden_policies.conditions import Condition, Matched, MatchInput
from postwarden_policies.model import Policy, Rule
from postwarden_policies.rewrite import RewriteError, RewritePlan, RewriteResult

from .policy_helpers import facts, policy

HEAD_A = "version: 1\nname: a\npriority: 10\n"
HEAD_B = "version: 1\nname: b\npriority: 20\n"
ENVELOPE = Envelope("someone@elsewhere.test", ("alice@example.com",), "198.51.100.7")


def message(*parts: tuple[str, bytes], subject: str | None = "Hello", extra: str = "") -> bytes:
    """A multipart/mixed message: a text part, then (filename, content) attachments."""
    head = "From: someone@elsewhere.test\r\nTo: alice@example.com\r\n"
    if subject is not None:
        head += f"Subject: {subject}\r\n"
    head += extra + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
    body = "--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there.\r\n"
    for name, content in parts:
        body += (
            f'--B\r\nContent-Type: application/octet-stream; name="{name}"\r\n'
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            f"{base64.b64encode(content).decode()}\r\n"
        )
    return (head + body + "--B--\r\n").encode()


PLAIN = message()
WITH_FILES = message(("tool.exe", b"MZ\x90\x00" * 10), ("sheet.xlsm", b"PK\x03\x04" * 300))
HTML = (
    b"From: someone@elsewhere.test\r\nTo: alice@example.com\r\nSubject: News\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Hi</p><script>alert(1)</script>\r\n"
)


def run(body: str, raw: bytes = PLAIN, envelope: Envelope = ENVELOPE) -> Verdict:
    return evaluate_message(policy(body), raw, envelope)


def stripped(verdict: Verdict) -> list[tuple[str, str]]:
    return [(c.filename, c.reason) for c in verdict.changes if isinstance(c, AttachmentStripped)]


def test_no_rules_accepts_unchanged() -> None:
    policy_set = policy("rules: []\n")
    verdict = evaluate_message(policy_set, PLAIN, ENVELOPE)
    assert verdict == Verdict(Accept(), policy_hash=policy_set.content_hash)
    assert apply_edits(PLAIN, verdict) is PLAIN


TERMINALS = [
    pytest.param("then: reject", Reject(Reply.REJECTED.reply), id="reject-default"),
    pytest.param(
        "then: reject\n    code: 554\n    message: No thanks",
        Reject(SmtpReply("554", "5.7.1", "No thanks")),
        id="reject-custom",
    ),
    pytest.param(
        "then: tempfail",
        TempFail(SmtpReply("451", "4.7.1", Reply.TEMPFAIL.value.text)),
        id="tempfail",
    ),
    pytest.param("then: discard", Discard(), id="discard"),
    pytest.param("then: quarantine", Quarantine("rule r"), id="quarantine-default-reason"),
    pytest.param(
        "then: quarantine\n    message: looks odd", Quarantine("looks odd"), id="quarantine-reason"
    ),
    pytest.param("then: accept", Accept(), id="accept"),
]


@pytest.mark.parametrize(("then", "decision"), TERMINALS)
def test_terminal_actions(then: str, decision: object) -> None:
    verdict = run(f"rules:\n  - name: r\n    {then}\n")
    assert verdict.decision == decision
    assert verdict.rules == ("r",)
    assert verdict.edits == ()


def test_first_terminal_ends_evaluation_and_edits_accumulate() -> None:
    verdict = run(
        """
        rules:
          - name: tag
            then: {add_header: {X-A: "1"}, notify: [audit, sec]}
          - name: skipped
            when: {sender: [nobody@nowhere.test]}
            then: reject
          - name: stop
            then: {action: accept, add_header: {X-B: "2"}, notify: audit}
          - name: never
            then: reject
        """
    )
    assert verdict.decision == Accept()
    assert verdict.rules == ("tag", "stop")
    assert verdict.edits == (AddHeader("X-A", "1"), AddHeader("X-B", "2"))
    assert verdict.notify == ("audit", "sec")


def test_reject_drops_accumulated_edits_but_keeps_rules_and_notify() -> None:
    verdict = run(
        "rules:\n  - name: tag\n    then: {add_header: {X-A: '1'}, notify: sec}\n"
        "  - name: refuse\n    then: reject\n"
    )
    assert (verdict.action, verdict.edits, verdict.rules, verdict.notify) == (
        Reject().action,
        (),
        ("tag", "refuse"),
        ("sec",),
    )


def test_strip_only_the_attachments_the_rule_matched() -> None:
    verdict = run(
        "rules:\n  - name: macros\n    when: {attachment: {filename: ['*.xlsm']}}\n"
        "    then: strip_attachment\n",
        WITH_FILES,
    )
    assert verdict.action is Accept().action
    assert stripped(verdict) == [("sheet.xlsm", "macros")]
    delivered = parse_message(apply_edits(WITH_FILES, verdict), ENVELOPE)
    assert [p.filename for p in delivered.attachments] == ["tool.exe"]
    assert [e for e in verdict.edits if not isinstance(e, ReplaceBody)] == []


def test_strip_without_attachment_condition_strips_all() -> None:
    verdict = run("rules:\n  - name: all\n    then: strip_attachment\n", WITH_FILES)
    assert stripped(verdict) == [("tool.exe", "all"), ("sheet.xlsm", "all")]


def test_strip_under_any_strips_all_when_a_branch_not_about_attachments_matched() -> None:
    # "Everything from untrusted.test, and .xlsm files from anyone."
    rule = (
        "rules:\n  - name: r\n    when:\n      any:\n        - sender_domain: [elsewhere.test]\n"
        "        - attachment: {filename: ['*.xlsm']}\n    then: strip_attachment\n"
    )
    assert stripped(run(rule, WITH_FILES)) == [("tool.exe", "r"), ("sheet.xlsm", "r")]
    other = Envelope("someone@other.test", ("alice@example.com",))
    assert stripped(run(rule, WITH_FILES, other)) == [("sheet.xlsm", "r")]


def test_strip_under_all_strips_what_every_attachment_condition_selected() -> None:
    verdict = run(
        "rules:\n  - name: r\n    when:\n      all:\n"
        "        - attachment: {filename: ['*.exe', '*.xlsm']}\n"
        "        - attachment: {size_over: 1000}\n    then: strip_attachment\n",
        WITH_FILES,
    )
    assert stripped(verdict) == [("sheet.xlsm", "r")]


def test_strip_with_nothing_to_strip_leaves_the_body() -> None:
    verdict = run("rules:\n  - name: all\n    then: strip_attachment\n", PLAIN)
    assert verdict.edits == () and verdict.changes == ()
    assert verdict.rules == ("all",)


def test_max_attachment_bytes_strips_with_its_reason() -> None:
    verdict = run("limits: {max_attachment_bytes: 1000}\n", WITH_FILES)
    assert stripped(verdict) == [("sheet.xlsm", "max_attachment_bytes")]


def test_max_attachment_bytes_holds_for_malformed_quoted_printable() -> None:
    # Readers show "=" they cannot decode as written: 3,000 bytes, once sized as 0.
    part = (
        b'--B\r\nContent-Type: application/octet-stream; name="big.bin"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + b"=" * 3000 + b"\r\n--B--"
    )
    raw = PLAIN.replace(b"--B--", part)
    verdict = run("limits: {max_attachment_bytes: 1000}\n", raw)
    assert stripped(verdict) == [("big.bin", "max_attachment_bytes")]


def test_rule_reason_wins_over_the_size_limit() -> None:
    verdict = run(
        "limits: {max_attachment_bytes: 1000}\nrules:\n  - name: r\n    then: strip_attachment\n",
        WITH_FILES,
    )
    assert stripped(verdict) == [("tool.exe", "r"), ("sheet.xlsm", "r")]


def test_header_edits_that_take_a_message_past_max_message_bytes_refuse_it() -> None:
    # Postfix's cleanup refused it after the audit row said accept ("message file too
    # big"); the limit counts what the edits add, as it counts what sanitizing adds.
    rules = "rules:\n  - name: pad\n    then: {add_header: {X-Pad: '%s'}}\n" % ("p" * 200)
    verdict = run(f"limits: {{max_message_bytes: {len(PLAIN) + 100}}}\n{rules}")
    assert verdict.decision == Reject(Reply.MESSAGE_TOO_BIG.reply)
    assert verdict.rules == ("pad", "limit:max_message_bytes")
    assert verdict.edits == ()
    assert run(f"limits: {{max_message_bytes: {len(PLAIN) + 300}}}\n{rules}").action.value \
        == "accept"


def test_max_message_bytes_rejects_before_rules() -> None:
    verdict = run("limits: {max_message_bytes: 100}\nrules:\n  - name: r\n    then: accept\n")
    assert verdict.decision == Reject(Reply.MESSAGE_TOO_BIG.reply)
    assert str(verdict.smtp_reply) == "552 5.3.4 Message size exceeds fixed limit"
    assert verdict.rules == ("limit:max_message_bytes",)


def test_max_recipients_deletes_the_extra_recipients() -> None:
    envelope = Envelope("a@b.test", ("r1@x.test", "r2@x.test", "r3@x.test"))
    policy_set = policy("limits: {max_recipients: 1}\nrules:\n  - name: r\n    then: accept\n")
    verdict = evaluate_message(policy_set, PLAIN, envelope)
    assert policy_set.limits.max_recipients == 1
    assert verdict.edits == (DeleteRecipient("r2@x.test"), DeleteRecipient("r3@x.test"))
    assert verdict.rules == ("r", "limit:max_recipients")


STRUCTURE = [
    pytest.param(
        "max_mime_parts: 2", "", Reject(Reply.TOO_MANY_PARTS.reply), "max_mime_parts", id="parts"
    ),
    pytest.param("max_mime_depth: 1", "", None, None, id="depth-within"),
    pytest.param(
        "max_mime_parts: 2",
        ", on_structure_limit: quarantine",
        Quarantine("limit max_mime_parts"),
        "max_mime_parts",
        id="parts-quarantine",
    ),
]


@pytest.mark.parametrize(("limit", "option", "decision", "hit"), STRUCTURE)
def test_structure_limits(limit: str, option: str, decision: object, hit: str | None) -> None:
    verdict = run(f"limits: {{{limit}{option}}}\n", WITH_FILES)
    if decision is None:
        assert verdict.decision == Accept() and verdict.rules == ()
    else:
        assert verdict.decision == decision
        assert verdict.rules == (f"limit:{hit}",)


@pytest.mark.parametrize("flag", ["too_many_parts", "too_deep"])
def test_parser_caps_count_as_structure_limits(flag: str) -> None:
    verdict = evaluate(policy("rules: []\n"), facts(flags=frozenset({flag, "malformed"})))
    assert verdict.decision == Reject(Reply.TOO_MANY_PARTS.reply)
    assert verdict.rules == (
        "limit:max_mime_parts" if flag == "too_many_parts" else "limit:max_mime_depth",
    )
    assert verdict.edits == ()  # refused: no tag to list as an edit of it


def test_structure_quarantine_is_not_undone_by_a_policy_that_sets_no_limits() -> None:
    quarantine = (
        "version: 1\nname: a\nlimits: {max_mime_parts: 2, on_structure_limit: quarantine}\n"
    )
    silent = "version: 1\nname: b\nrules:\n  - name: tag\n    then: {add_header: {X-T: '1'}}\n"
    policy_set = load_policy_set_from_sources([("a.yaml", quarantine), ("b.yaml", silent)])
    verdict = evaluate_message(policy_set, WITH_FILES, ENVELOPE)
    assert verdict.decision == Quarantine("limit max_mime_parts")
    assert verdict.rules == ("limit:max_mime_parts",)


def test_a_structure_quarantine_removes_the_recipients_past_a_lowered_limit() -> None:
    # Held with every recipient, a release sent it to those a reload's lower
    # max_recipients removes from any other message that goes on.
    envelope = Envelope("a@b.test", ("r1@x.test", "r2@x.test", "r3@x.test"))
    policy_set = policy("limits: {max_recipients: 1, max_mime_parts: 2, "
                        "on_structure_limit: quarantine}\n")
    verdict = evaluate_message(policy_set, WITH_FILES, envelope)
    assert verdict.decision == Quarantine("limit max_mime_parts")
    assert verdict.rules == ("limit:max_mime_parts", "limit:max_recipients")
    assert verdict.edits[:2] == (DeleteRecipient("r2@x.test"), DeleteRecipient("r3@x.test"))


def test_a_structure_quarantine_the_added_headers_take_past_max_message_bytes_refuses() -> None:
    # Held past the limit, with the tag and the milter's id header: Postfix's cleanup
    # refused it (message file too big) after the audit row said quarantine.
    own = (AddHeader("X-Postwarden-Id", "u" * 32),)
    limits = "max_mime_parts: 2, on_structure_limit: quarantine"
    tight = policy(f"limits: {{max_message_bytes: {len(WITH_FILES) + 40}, {limits}}}\n")
    verdict = evaluate(tight, engine.parse_for(tight, WITH_FILES, ENVELOPE), own)
    assert verdict.decision == Reject(Reply.MESSAGE_TOO_BIG.reply)
    assert verdict.rules == ("limit:max_mime_parts", "limit:max_message_bytes")
    assert verdict.edits == ()
    roomy = policy(f"limits: {{max_message_bytes: {len(WITH_FILES) + 200}, {limits}}}\n")
    assert evaluate(roomy, engine.parse_for(roomy, WITH_FILES, ENVELOPE), own).decision \
        == Quarantine("limit max_mime_parts")


def test_structure_quarantine_is_tagged() -> None:
    verdict = evaluate(
        policy("limits: {on_structure_limit: quarantine}\n"), facts(flags=frozenset({"too_deep"}))
    )
    assert verdict.decision == Quarantine("limit max_mime_depth")
    assert verdict.edits == (AddHeader("X-Postwarden-Flags", "too_deep"),)


SUBJECTS = [
    pytest.param("Hello", ["[EXT] "], ChangeHeader("Subject", 1, "[EXT] Hello"), id="prefix"),
    pytest.param("[EXT] Hello", ["[EXT] "], None, id="no-double-prefix"),
    pytest.param(None, ["[EXT] "], AddHeader("Subject", "[EXT]"), id="no-subject"),
    pytest.param(
        "Hi", ["[EXT] ", "[BULK] "], ChangeHeader("Subject", 1, "[BULK] [EXT] Hi"), id="two"
    ),
    pytest.param(None, ["[A] ", "[B] "], AddHeader("Subject", "[B] [A]"), id="two-no-subject"),
    # What we write for a missing or an empty Subject, seen again on the next hop.
    pytest.param("[EXT]", ["[EXT] "], None, id="only-the-prefix"),
    pytest.param(" [EXT] ", ["[EXT] "], None, id="only-the-prefix-padded"),
    pytest.param("[EXTERNAL] Hi", ["[EXT] "], ChangeHeader("Subject", 1, "[EXT] [EXTERNAL] Hi"),
                 id="a-longer-tag-is-not-ours"),
    pytest.param("[BULK] [EXT] Hi", ["[EXT] ", "[BULK] "], None, id="two-already-there"),
    pytest.param("[EXT] [BULK] Hi", ["[EXT] ", "[BULK] "], None, id="two-in-another-order"),
    pytest.param("[EXT] Hi", ["[EXT] ", "[BULK] "], ChangeHeader("Subject", 1, "[BULK] [EXT] Hi"),
                 id="one-of-two-there"),
    pytest.param("Hi", ["[EXT] ", "[EXT] "], ChangeHeader("Subject", 1, "[EXT] Hi"),
                 id="one-prefix-from-two-rules"),
    pytest.param(None, ["[EXT] ", "[B] ", "[EXT] "], AddHeader("Subject", "[B] [EXT]"),
                 id="one-prefix-from-two-rules-no-subject"),
    # Python decodes these to "[EXT] ..."; readers without UTF-7 (or the made-up
    # charset) show the encoded word as it is: the prefix must still go on.
    pytest.param(
        "=?utf-7?q?+AFs-EXT+AF0-_?=Invoice",
        ["[EXT] "],
        ChangeHeader("Subject", 1, "[EXT] =?utf-7?q?+AFs-EXT+AF0-_?=Invoice"),
        id="utf7-lookalike",
    ),
    pytest.param(
        "=?x-bogus?q?=5BEXT=5D_?=Invoice",
        ["[EXT] "],
        ChangeHeader("Subject", 1, "[EXT] =?x-bogus?q?=5BEXT=5D_?=Invoice"),
        id="unknown-charset-lookalike",
    ),
    # RFC 2047: a word is decoded only with blanks (or the value's ends) around it; a
    # prefix without its trailing space, or one that is a word itself, gets one.
    pytest.param("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", ["[EXT]"],
                 ChangeHeader("Subject", 1, "[EXT] =?utf-8?q?Gr=C3=BC=C3=9Fe?="),
                 id="prefix-before-an-encoded-word"),
    pytest.param("Hi", ["=?utf-8?q?=C3=84?="], ChangeHeader("Subject", 1, "=?utf-8?q?=C3=84?= Hi"),
                 id="an-encoded-word-prefix"),
    pytest.param(None, ["=?utf-8?q?=C3=84?=", "[B]"],
                 AddHeader("Subject", "[B] =?utf-8?q?=C3=84?="),
                 id="an-encoded-word-prefix-after-another-no-subject"),
    pytest.param("Hi", ["[EXT]"], ChangeHeader("Subject", 1, "[EXT]Hi"),
                 id="plain-text-as-written"),
]


@pytest.mark.parametrize(("subject", "prefixes", "edit"), SUBJECTS)
def test_subject_prefix(subject: str | None, prefixes: list[str], edit: object) -> None:
    rules = "".join(
        f"  - name: p{i}\n    then: {{subject_prefix: '{p}'}}\n" for i, p in enumerate(prefixes)
    )
    verdict = run("tag_flags: false\nrules:\n" + rules, message(subject=subject))
    assert verdict.edits == (() if edit is None else (edit,))


def test_one_prefix_from_two_policies_without_a_subject() -> None:
    tag = "rules:\n  - name: {}\n    then: {{subject_prefix: '[EXT] '}}\n"
    policy_set = load_policy_set_from_sources(
        [("a.yaml", HEAD_A + tag.format("a")), ("b.yaml", HEAD_B + tag.format("b"))]
    )
    verdict = evaluate_message(policy_set, message(subject=None), ENVELOPE)
    assert verdict.rules == ("a", "b")
    assert verdict.edits == (AddHeader("Subject", "[EXT]"),)


def test_one_header_two_policies_add_goes_once_unless_removed_between() -> None:
    tag = "rules:\n  - name: {}\n    then: {{add_header: {{X-External: 'yes'}}}}\n"
    policy_set = load_policy_set_from_sources(
        [("a.yaml", HEAD_A + tag.format("a")), ("b.yaml", HEAD_B + tag.format("b"))]
    )
    verdict = evaluate_message(policy_set, message(), ENVELOPE)
    assert verdict.rules == ("a", "b")
    assert verdict.edits == (AddHeader("X-External", "yes"),)
    readded = run("""
        rules:
          - {name: a, then: {add_header: {X-External: "yes"}}}
          - {name: b, then: {remove_header: [X-External]}}
          - {name: c, then: {add_header: {X-External: "yes"}}}
          - {name: d, then: {add_header: {X-External: "no"}}}
        """)
    assert readded.edits == (AddHeader("X-External", "yes"), RemoveHeader("X-External"),
                             AddHeader("X-External", "yes"), AddHeader("X-External", "no"))


def test_remove_header_only_when_present() -> None:
    raw = message(extra="X-Mailer: spam 1.0\r\nx-mailer: again\r\n")
    rule = "rules:\n  - name: r\n    then: {remove_header: [X-Mailer, X-Absent]}\n"
    assert run(rule, raw).edits == (RemoveHeader("X-Mailer"),)
    delivered = apply_edits(raw, run(rule, raw))
    assert b"mailer" not in delivered.lower() and delivered.endswith(raw[raw.index(b"\r\n\r\n") :])


def test_report_mode_records_but_applies_nothing() -> None:
    enforce = "version: 1\nname: e\nrules:\n  - name: tag\n    then: {add_header: {X-A: '1'}}\n"
    report = (
        "version: 1\nname: shadow\nmode: report\nlimits: {max_message_bytes: 1}\n"
        "rules:\n  - name: would-reject\n    then: {action: reject, notify: sec}\n"
        "  - name: after\n    then: accept\n"
    )
    policy_set = load_policy_set_from_sources([("e", enforce), ("s", report)])
    verdict = evaluate_message(policy_set, PLAIN, ENVELOPE)
    assert verdict.decision == Accept()
    assert verdict.rules == ("tag", "report:limit:max_message_bytes", "report:would-reject")
    assert verdict.report_only is True
    assert verdict.notify == ()
    assert verdict.edits == (AddHeader("X-A", "1"),)


def test_html_is_sanitized_when_the_policy_says_so() -> None:
    verdict = run("sanitize: {html: true}\n", HTML)
    assert [type(c) for c in verdict.changes] == [HtmlSanitized]
    assert isinstance(verdict.edits[-1], ReplaceBody)
    assert b"<script>" not in apply_edits(HTML, verdict)
    assert b"<p>Hi</p>" in apply_edits(HTML, verdict)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("rules: []\n", id="sanitize-off-by-default"),
        pytest.param(
            "sanitize: {html: true}\nrules:\n  - name: raw\n    sanitize: false\n"
            "    then: accept\n",
            id="rule-says-sanitize-false",
        ),
        pytest.param(
            "sanitize: {html: true}\nrules:\n  - name: r\n    then: reject\n",
            id="rejected-not-rewritten",
        ),
    ],
)
def test_html_left_alone(body: str) -> None:
    verdict = run(body, HTML)
    assert not verdict.body_changed and verdict.changes == ()


def test_clean_html_keeps_the_body() -> None:
    clean = HTML.replace(b"<script>alert(1)</script>", b"")
    verdict = run("sanitize: {html: true}\n", clean)
    assert verdict.edits == () and apply_edits(clean, verdict) is clean


MALFORMED = (
    b"From: a@b.test\r\nSubject: x\r\nX-Postwarden-Flags: forged\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="never"\r\n\r\n--never\r\n'
    b"Content-Type: text/html\r\n\r\n<script>x</script>\r\n"
)


def test_malformed_is_delivered_unmodified_and_tagged() -> None:
    verdict = run("sanitize: {html: true}\n", MALFORMED)
    assert "malformed" in verdict.flags
    assert verdict.edits == (
        RemoveHeader("X-Postwarden-Flags"),
        AddHeader("X-Postwarden-Flags", ", ".join(sorted(verdict.flags))),
    )
    assert verdict.changes == ()


FORGED = b"From: a@b.test\r\nX-Postwarden-Flags: malformed\r\nSubject: x\r\n\r\nclean\r\n"


def test_a_forged_flags_header_is_removed_from_a_message_not_flagged() -> None:
    verdict = run("rules: []\n", FORGED)
    assert verdict.flags == frozenset()
    assert verdict.edits == (RemoveHeader("X-Postwarden-Flags"),)
    assert apply_edits(FORGED, verdict) == b"From: a@b.test\r\nSubject: x\r\n\r\nclean\r\n"


def test_tagging_can_be_turned_off() -> None:
    verdict = run("tag_flags: false\n", MALFORMED)
    assert "malformed" in verdict.flags and verdict.edits == ()
    assert run("tag_flags: false\n", FORGED).edits == ()


def test_a_forged_flags_header_is_removed_while_only_report_mode_policies_are_loaded() -> None:
    # No tag is added in a trial, yet the message gets our id header: a forged tag on it
    # would be read downstream as ours.
    trial = "version: 1\nname: trial\nmode: report\ntag_flags: false\nrules: []\n"
    for sources in ([("t", trial)], []):
        for raw in (FORGED, MALFORMED):  # the malformed one is not tagged
            verdict = evaluate_message(load_policy_set_from_sources(sources), raw, ENVELOPE)
            assert verdict.edits == (RemoveHeader("X-Postwarden-Flags"),)


def test_a_rewrite_that_fails_its_check_quarantines(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(facts: MessageFacts, plan: RewritePlan) -> RewriteResult:
        raise RewriteError("an untouched part changed")

    monkeypatch.setattr(engine, "rewrite_body", failing)
    verdict = run("rules:\n  - name: r\n    then: strip_attachment\n", WITH_FILES)
    assert verdict.decision == Quarantine("rewrite failed: an untouched part changed")
    assert (verdict.rules, verdict.edits, verdict.changes) == (("r",), (), ())


def test_a_rewrite_that_fails_is_not_held_past_max_message_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Held with the header lines a rule adds, it was refused by Postfix's cleanup
    # ("message file too big") after the audit row said quarantine.
    def failing(facts: MessageFacts, plan: RewritePlan) -> RewriteResult:
        raise RewriteError("an untouched part changed")

    monkeypatch.setattr(engine, "rewrite_body", failing)
    verdict = run(f"limits: {{max_message_bytes: {len(WITH_FILES) + 100}}}\n"
                  "rules:\n  - name: r\n    then: {strip_attachment: true, "
                  f"add_header: {{X-Pad: '{'p' * 200}'}}}}\n", WITH_FILES)
    assert verdict.decision == Reject(Reply.MESSAGE_TOO_BIG.reply)
    assert verdict.rules == ("r", "limit:max_message_bytes")


class Boom(Condition):
    def match(self, item: MatchInput) -> Matched:
        raise RuntimeError("bug")


def test_an_internal_error_tempfails_instead_of_raising() -> None:
    policy_set = PolicySet.of([Policy("p", "p", rules=(Rule("boom", when=Boom()),))], "h")
    verdict = evaluate(policy_set, facts())
    assert verdict.decision == TempFail(Reply.INTERNAL_ERROR.reply)
    assert verdict.flags == frozenset({"internal_error"})
    assert verdict.policy_hash == "h"


def test_evaluation_is_thread_safe() -> None:
    policy_set = policy(
        "sanitize: {html: true}\nrules:\n  - name: m\n"
        "    when: {attachment: {filename: ['*.xlsm']}}\n    then: strip_attachment\n"
        "  - name: t\n    then: {subject_prefix: '[X] '}\n"
    )
    inputs = [WITH_FILES, HTML, PLAIN] * 20
    expected = [evaluate_message(policy_set, raw, ENVELOPE) for raw in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda raw: evaluate_message(policy_set, raw, ENVELOPE), inputs))
    assert results == expected
