"""The one adapter from verdict values to milter actions and SMTP replies.

Nothing else in the milter turns a :class:`Verdict` (or an internal failure)
into ``setreply``/``replacebody``/header edits. The actions go through the
:class:`MilterActions` protocol, which ``libmilter.PostwardenMilter``
satisfies and tests replace with pymilter's ``TestCtx``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from postwarden_policies import (
    AddHeader,
    ChangeHeader,
    DeleteRecipient,
    Discard,
    Quarantine,
    Reject,
    RemoveHeader,
    ReplaceBody,
    Reply,
    SmtpReply,
    TempFail,
    Verdict,
)

from .headervalues import sendable
from .settings import FailAction

REPLACEBODY_CHUNK = 64 * 1024  # libmilter's limit per replacebody call
FAIL_REJECT = SmtpReply("550", "5.3.0", "Message rejected due to an internal error")


class Outcome(enum.Enum):
    """What a callback answers; libmilter maps each to pymilter's constant."""

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"


class MilterActions(Protocol):
    def setreply(self, rcode: str, xcode: str | None = None, msg: str | None = None) -> None: ...
    def addheader(self, field: str, value: str, idx: int = -1) -> None: ...
    def chgheader(self, field: str, idx: int, value: str) -> None: ...
    def replacebody(self, body: bytes) -> None: ...
    def quarantine(self, reason: str) -> None: ...
    def delrcpt(self, rcpt: str) -> None: ...
    def progress(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: Outcome
    reply: SmtpReply | None  # the reply sent, for the audit row


@dataclass(frozen=True, slots=True)
class MessageEdits:
    """What apply needs to know about the message as received."""

    uid: str
    id_header: str  # empty: do not add our id header
    header_counts: Mapping[str, int]  # lower-case name -> occurrences
    recipients: Sequence[str]  # RCPT TO addresses as Postfix holds them (no <>), in order
    leading_space: bool  # P_HDR_LEADSPC negotiated: we supply the space after the colon


def send_reply(actions: MilterActions, reply: SmtpReply) -> None:
    # libmilter silently drops a reply with a lone '%'; policy texts may contain one.
    actions.setreply(reply.code, reply.status, reply.text.replace("%", "%%"))


def reply_with(actions: MilterActions, reply: Reply) -> Applied:
    """Refuse with one of our fixed replies (4xx tempfails, 5xx rejects)."""
    send_reply(actions, reply.reply)
    outcome = Outcome.TEMPFAIL if reply.reply.code.startswith("4") else Outcome.REJECT
    return Applied(outcome, reply.reply)


def fail(actions: MilterActions, action: FailAction) -> Applied:
    """The configured answer to an internal error or a missed deadline."""
    if action is FailAction.ACCEPT:
        return Applied(Outcome.ACCEPT, None)
    if action is FailAction.REJECT:
        send_reply(actions, FAIL_REJECT)
        return Applied(Outcome.REJECT, FAIL_REJECT)
    return reply_with(actions, Reply.INTERNAL_ERROR)


def _edit_headers(actions: MilterActions, verdict: Verdict, message: MessageEdits) -> None:
    # Postfix's header indexes count the copies we add too (they go after the rest).
    counts = Counter(message.header_counts)
    for edit in verdict.edits:
        if isinstance(edit, AddHeader):
            actions.addheader(edit.name, sendable(edit.name, edit.value, message.leading_space))
            counts[edit.name.lower()] += 1
        elif isinstance(edit, ChangeHeader):
            # An empty value deletes (delivery.py); with the leading space it would not.
            value = sendable(edit.name, edit.value, message.leading_space) if edit.value else ""
            actions.chgheader(edit.name, edit.index, value)
        elif isinstance(edit, RemoveHeader):
            _remove_header(actions, edit.name, counts)
    _delete_recipients(actions, verdict, message.recipients)
    if message.id_header:
        # A sender's copy must not stand before ours, where a reader looks first.
        _remove_header(actions, message.id_header, counts)
        actions.addheader(message.id_header,
                          sendable(message.id_header, message.uid, message.leading_space))


def _delete_recipients(actions: MilterActions, verdict: Verdict,
                       recipients: Sequence[str]) -> None:
    """``recipients`` are those Postfix keeps (its duplicate filter drops a repeated one,
    session.recipient_key), yet one address may stay twice (given with other DSN
    parameters), and Postfix deletes every recipient whose RCPT TO address is byte for
    byte the one named. So each address past the limit is named as given, once, and not
    while a copy spelt the same stays: naming it would delete the kept one."""
    deleted = [e.address for e in verdict.edits if isinstance(e, DeleteRecipient)]
    if not deleted:  # nearly every message: no Counter to build
        return
    left = Counter(recipients)
    left.subtract(deleted)
    for address in dict.fromkeys(deleted):
        if left[address] <= 0:
            actions.delrcpt(f"<{address}>")


def _remove_header(actions: MilterActions, name: str, counts: Counter[str]) -> None:
    # From the last occurrence down, so earlier indexes never shift.
    for index in range(counts[name.lower()], 0, -1):
        actions.chgheader(name, index, "")
    counts[name.lower()] = 0


def _replace_body(actions: MilterActions, verdict: Verdict) -> None:
    for edit in verdict.edits:
        if isinstance(edit, ReplaceBody):
            body = memoryview(edit.body)
            # One uninterrupted run of calls: libmilter needs the chunks contiguous.
            for start in range(0, len(body), REPLACEBODY_CHUNK):
                actions.replacebody(bytes(body[start : start + REPLACEBODY_CHUNK]))
            if not body:
                actions.replacebody(b"")


def apply_verdict(actions: MilterActions, verdict: Verdict, message: MessageEdits) -> Applied:
    """Answer the end of message as the verdict says; edits only when the mail goes on.

    ``verdict.report_only`` changes nothing here: the engine keeps report-mode
    rules out of the decision and the edits, so what is left is enforced.
    """
    decision = verdict.decision
    if isinstance(decision, Reject | TempFail):
        send_reply(actions, decision.reply)
        outcome = Outcome.REJECT if isinstance(decision, Reject) else Outcome.TEMPFAIL
        return Applied(outcome, decision.reply)
    if isinstance(decision, Discard):
        return Applied(Outcome.DISCARD, None)
    _edit_headers(actions, verdict, message)
    _replace_body(actions, verdict)
    if isinstance(decision, Quarantine):
        actions.quarantine(decision.reason or "postwarden")
    return Applied(Outcome.CONTINUE, None)
