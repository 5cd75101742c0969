"""The verdict -> milter actions mapping (the one adapter)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from postwarden_milter.apply import (
    FAIL_REJECT,
    REPLACEBODY_CHUNK,
    MessageEdits,
    Outcome,
    apply_verdict,
    fail,
)
from postwarden_milter.settings import FailAction
from postwarden_policies import (
    Accept,
    AddHeader,
    ChangeHeader,
    DeleteRecipient,
    Discard,
    Envelope,
    Quarantine,
    Reject,
    RemoveHeader,
    ReplaceBody,
    Reply,
    SmtpReply,
    TempFail,
    Verdict,
    evaluate,
    parse_message,
)
from postwarden_policies.loader import load_policy_set_from_sources


class Recorder:
    """Records milter actions in call order (libmilter's own TestCtx lacks quarantine)."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def setreply(self, rcode: str, xcode: str | None = None, msg: str | None = None) -> None:
        self.calls.append(("setreply", rcode, xcode, msg))

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        self.calls.append(("addheader", field, value))

    def chgheader(self, field: str, idx: int, value: str) -> None:
        self.calls.append(("chgheader", field, idx, value))

    def replacebody(self, body: bytes) -> None:
        self.calls.append(("replacebody", body))

    def quarantine(self, reason: str) -> None:
        self.calls.append(("quarantine", reason))

    def delrcpt(self, rcpt: str) -> None:
        self.calls.append(("delrcpt", rcpt))

    def progress(self) -> None:
        self.calls.append(("progress",))


EDITS = MessageEdits(
    uid="u1", id_header="X-Postwarden-Id", header_counts={"x-spam": 3},
    recipients=("alice@example.net", "Bob@Example.NET"), leading_space=True,
)


@pytest.mark.parametrize(
    ("decision", "outcome", "calls"),
    [
        pytest.param(Accept(), Outcome.CONTINUE, [("addheader", "X-Postwarden-Id", " u1")],
                     id="accept"),
        pytest.param(Reject(SmtpReply("550", "5.7.1", "100% bad")), Outcome.REJECT,
                     [("setreply", "550", "5.7.1", "100%% bad")], id="reject-escapes-percent"),
        pytest.param(TempFail(), Outcome.TEMPFAIL,
                     [("setreply", "451", "4.7.1", Reply.TEMPFAIL.reply.text)], id="tempfail"),
        pytest.param(Discard(), Outcome.DISCARD, [], id="discard"),
        pytest.param(Quarantine("suspicious"), Outcome.CONTINUE,
                     [("addheader", "X-Postwarden-Id", " u1"), ("quarantine", "suspicious")],
                     id="quarantine"),
    ],
)
def test_decisions(decision: object, outcome: Outcome, calls: list[tuple[object, ...]]) -> None:
    actions = Recorder()
    applied = apply_verdict(actions, Verdict(decision=decision), EDITS)  # type: ignore[arg-type]
    assert applied.outcome is outcome
    assert actions.calls == calls


def test_edits_are_applied_when_the_message_goes_on() -> None:
    body = b"x" * (2 * REPLACEBODY_CHUNK + 10)
    verdict = Verdict(Accept(), edits=(
        AddHeader("X-Scanned", "yes"), ChangeHeader("Subject", 1, "[ext] hi"),
        RemoveHeader("X-Spam"), DeleteRecipient("Bob@Example.NET"), ReplaceBody(body),
    ))
    actions = Recorder()
    apply_verdict(actions, verdict, EDITS)
    assert actions.calls[:8] == [
        ("addheader", "X-Scanned", " yes"), ("chgheader", "Subject", 1, " [ext] hi"),
        ("chgheader", "X-Spam", 3, ""), ("chgheader", "X-Spam", 2, ""),
        ("chgheader", "X-Spam", 1, ""), ("addheader", "X-Postwarden-Id", " u1"),
        ("delrcpt", "<Bob@Example.NET>"), ("replacebody", body[:REPLACEBODY_CHUNK]),
    ]
    chunks = [c[1] for c in actions.calls if c[0] == "replacebody"]
    assert all(isinstance(c, bytes) and len(c) <= REPLACEBODY_CHUNK for c in chunks)
    assert b"".join(chunks) == body  # type: ignore[arg-type]


def test_a_removal_after_an_addition_removes_the_added_copy_too() -> None:
    # Postfix counts the copies a milter adds (they go after the others): rule A's
    # X-Spam is the fourth, and rule B's removal must reach it as the policy says.
    verdict = Verdict(Accept(), edits=(AddHeader("X-Spam", "added"), RemoveHeader("X-Spam"),
                                       AddHeader("X-Spam", "kept")))
    actions = Recorder()
    apply_verdict(actions, verdict, EDITS)
    assert actions.calls == [
        ("addheader", "X-Spam", " added"),
        *(("chgheader", "X-Spam", index, "") for index in (4, 3, 2, 1)),
        ("addheader", "X-Spam", " kept"), ("addheader", "X-Postwarden-Id", " u1"),
    ]


def test_a_senders_own_id_header_goes_before_ours_is_added() -> None:
    edits = dataclasses.replace(EDITS, header_counts={"x-postwarden-id": 2})
    actions = Recorder()
    apply_verdict(actions, Verdict(Accept()), edits)
    assert actions.calls == [
        ("chgheader", "X-Postwarden-Id", 2, ""), ("chgheader", "X-Postwarden-Id", 1, ""),
        ("addheader", "X-Postwarden-Id", " u1"),
    ]


def test_header_values_are_what_pymilter_can_send() -> None:
    # pymilter passes values as strict UTF-8 C strings: raw 8-bit bytes kept as
    # surrogates, or a NUL, would raise in the call and fail the whole message. The
    # policy library puts a prefixed Subject's raw words in encoded words
    # (tests/policies/test_raw_subject_words.py); a NUL goes here.
    tag = load_policy_set_from_sources([("t.yaml", "version: 1\nname: t\ntag_flags: false\n"
                                         "rules:\n  - name: tag\n"
                                         "    then: {subject_prefix: '[EXT] '}\n")])
    facts = parse_message(b"Subject: f\xe4llig\r\n\r\nbody\r\n", Envelope())
    (prefixed,) = evaluate(tag, facts).edits
    verdict = Verdict(Accept(), edits=(prefixed, AddHeader("X-Note", "a\0b")))
    actions = Recorder()
    apply_verdict(actions, verdict, EDITS)
    values = [str(call[-1]) for call in actions.calls if call[0] in ("chgheader", "addheader")]
    assert values[:2] == [" [EXT] =?UTF-8?Q?f=C3=A4llig?=", " ab"]
    for value in values:
        value.encode("utf-8")  # strict, as pymilter converts it
        assert "\0" not in value


def test_rejected_message_gets_no_edits() -> None:
    edits = (AddHeader("X-Scanned", "yes"), ReplaceBody(b"new\r\n"))
    actions = Recorder()
    apply_verdict(actions, Verdict(Reject(), edits=edits), EDITS)
    assert [c[0] for c in actions.calls] == ["setreply"]


def test_a_report_mode_match_does_not_switch_off_the_enforced_verdict() -> None:
    """report_only says a shadow policy matched; what the enforced rules decided still holds."""
    actions = Recorder()
    applied = apply_verdict(actions, Verdict(Reject(), report_only=True), EDITS)
    assert applied.outcome is Outcome.REJECT
    assert [c[0] for c in actions.calls] == ["setreply"]
    actions = Recorder()
    edits = (AddHeader("X-Scanned", "yes"),)
    apply_verdict(actions, Verdict(Accept(), edits=edits, report_only=True), EDITS)
    assert ("addheader", "X-Scanned", " yes") in actions.calls


@pytest.mark.parametrize(
    ("action", "outcome", "reply"),
    [
        pytest.param(FailAction.TEMPFAIL, Outcome.TEMPFAIL, Reply.INTERNAL_ERROR.reply,
                     id="tempfail"),
        pytest.param(FailAction.REJECT, Outcome.REJECT, FAIL_REJECT, id="reject"),
        pytest.param(FailAction.ACCEPT, Outcome.ACCEPT, None, id="accept"),
    ],
)
def test_fail_action(action: FailAction, outcome: Outcome, reply: SmtpReply | None) -> None:
    actions = Recorder()
    applied = fail(actions, action)
    assert applied.outcome is outcome and applied.reply == reply
    if reply is not None:
        assert actions.calls == [("setreply", reply.code, reply.status, reply.text)]


def test_every_reply_pairs_basic_and_enhanced_code() -> None:
    for reply in [FAIL_REJECT, *(r.reply for r in Reply)]:
        assert re.fullmatch(r"[45]\d\d", reply.code)
        assert reply.status[0] == reply.code[0] and re.fullmatch(r"\d\.\d{1,3}\.\d{1,3}",
                                                                 reply.status)
