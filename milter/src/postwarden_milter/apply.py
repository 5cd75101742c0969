"""The one adapter from verdict values to milter actions and SMTP replies.

Nothing else in the milter turns a :class:`Verdict` (or an internal failure)
into ``setreply``/``replacebody``/header edits. The actions go through the
:class:`MilterActions` protocol, which ``libmilter.PostwardenMilter``
satisfies and tests replace with pymilter's ``TestCtx``. A message whose
edits would delete more than :data:`MAX_HEADER_DELETIONS` header fields is
refused instead, before any edit is sent, and so is a local submission whose verdict
deletes recipients (past max_recipients); the refusal keeps the verdict's rules.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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

log = logging.getLogger(__name__)

REPLACEBODY_CHUNK = 64 * 1024  # libmilter's limit per replacebody call
FAIL_REJECT = SmtpReply("550", "5.3.0", "Message rejected due to an internal error")
# Postfix's cleanup finds each header a milter deletes by reading the queue file's header
# section from the top, so deleting n copies of one costs O(n^2): 8,000 copies of
# X-Postwarden-Id (which any sender may send) took 1.8 s of its CPU per message, 13,000
# made it panic. 100 deletions cost at most 100 reads of the section (100 copies alone,
# at that rate: about 0.3 ms), and 100 is twice what mail carries honestly: Postfix
# bounces a message with more than hopcount_limit (50) Received headers, the most a
# policy stripping a header would delete, and a message brings at most one copy of each
# of our own headers (each hop that wrote one removed those before).
MAX_HEADER_DELETIONS = 100
# Refused, not quarantined: a quarantined message needs the same deletions. In the class
# of the structure limits (max_mime_parts), with a text naming this one.
TOO_MANY_HEADER_DELETIONS = SmtpReply("554", "5.6.0", "Message structure too complex: "
                                      "too many copies of a header field this server removes")
HEADER_DELETIONS_FLAG = "too_many_header_deletions"  # the audit row's flag of that refusal
_QUOTING = re.compile(r'["\\\s]')  # what _as_compared drops of an address


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
    # The verdict as the milter's own limit answered it in place of the one given (a
    # reject: its rules and their notify stand, none of its edits was made), and the audit
    # row's flags for that limit; None when the verdict was answered.
    refused: Verdict | None = None
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HeaderCall:
    """One header edit as libmilter takes it: ``index`` None adds, else changes the
    index-th copy of ``name`` (1-based), which an empty ``value`` deletes."""

    name: str
    index: int | None
    value: str

    @property
    def deletes(self) -> bool:
        return self.index is not None and not self.value


@dataclass(frozen=True, slots=True)
class MessageEdits:
    """What apply needs to know about the message as received."""

    uid: str
    id_header: str  # empty: do not add our id header
    header_counts: Mapping[str, int]  # lower-case name -> occurrences
    recipients: Sequence[str]  # RCPT TO addresses as Postfix holds them (no <>), in order
    leading_space: bool  # P_HDR_LEADSPC negotiated: we supply the space after the colon
    local: bool = False  # submitted with sendmail(1): Postfix can refuse none of its recipients


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


def _header_calls(verdict: Verdict, message: MessageEdits) -> list[HeaderCall]:
    """The header edits of a delivered message, in order, as libmilter calls."""
    # Postfix's header indexes count the copies we add too (they go after the rest).
    counts = Counter(message.header_counts)
    calls: list[HeaderCall] = []
    for edit in verdict.edits:
        if isinstance(edit, AddHeader):
            calls.append(HeaderCall(edit.name, None,
                                    sendable(edit.name, edit.value, message.leading_space)))
            counts[edit.name.lower()] += 1
        elif isinstance(edit, ChangeHeader):
            # An empty value deletes (delivery.py); with the leading space it would not.
            value = sendable(edit.name, edit.value, message.leading_space) if edit.value else ""
            calls.append(HeaderCall(edit.name, edit.index, value))
        elif isinstance(edit, RemoveHeader):
            calls += _removals(edit.name, counts)
    if message.id_header:
        # A sender's copy must not stand before ours, where a reader looks first.
        calls += _removals(message.id_header, counts)
    calls += (HeaderCall(own.name, None, sendable(own.name, own.value, message.leading_space))
              for own in own_headers(message.id_header, message.uid))
    return calls


def own_headers(id_header: str, uid: str) -> tuple[AddHeader, ...]:
    """The fields the milter adds to a message that goes on, after its verdict's edits:
    our id header, unless ``id_header`` is empty (evaluate counts them against
    max_message_bytes)."""
    return (AddHeader(id_header, uid),) if id_header else ()


def recipients_to_delete(verdict: Verdict, recipients: Sequence[str]) -> list[str]:
    """The addresses end of message names to delrcpt (and the audit row lists).

    ``recipients`` are those Postfix keeps (its duplicate filter drops a repeated one,
    session.recipient_key), yet one address may stay twice (given with other DSN
    parameters, or quoted otherwise: ``"bob"@x`` and ``bob@x``), and Postfix deletes
    every recipient whose RCPT TO address, unquoted, is byte for byte the one named,
    unquoted. So each address past the limit is named as given, once, and not while a
    copy that reads the same (:func:`_as_compared`) stays: naming it would delete the
    kept one (past the limit, it then goes out too). delrcpt is given one without
    its source route (:func:`_routeless`)."""
    deleted = [e.address for e in verdict.edits if isinstance(e, DeleteRecipient)]
    if not deleted:  # nearly every message: no Counter to build
        return []
    left = Counter(map(_as_compared, recipients))
    left.subtract(map(_as_compared, deleted))
    return [address for address in dict.fromkeys(deleted) if left[_as_compared(address)] <= 0]


def _as_compared(address: str) -> str:
    """``address`` as Postfix's delrcpt compares it, or coarser (two that read the same
    here at worst keep a recipient past the limit): its RFC 5321 source route dropped,
    and the quotes, backslashes and blanks that quoting brings."""
    return _QUOTING.sub("", _routeless(address))


def _routeless(address: str) -> str:
    """``address`` without its RFC 5321 source route (``@relay.example:bob@x``), as
    Postfix's smtpd holds a recipient: named with it, delrcpt deleted nothing."""
    return address.partition(":")[2] if address.startswith("@") else address


def _removals(name: str, counts: Counter[str]) -> list[HeaderCall]:
    # From the last occurrence down, so earlier indexes never shift.
    calls = [HeaderCall(name, index, "") for index in range(counts[name.lower()], 0, -1)]
    counts[name.lower()] = 0
    return calls


def _replace_body(actions: MilterActions, verdict: Verdict) -> None:
    for edit in verdict.edits:
        if isinstance(edit, ReplaceBody):
            body = memoryview(edit.body)
            # One uninterrupted run of calls: libmilter needs the chunks contiguous.
            for start in range(0, len(body), REPLACEBODY_CHUNK):
                actions.replacebody(bytes(body[start : start + REPLACEBODY_CHUNK]))
            if not body:
                actions.replacebody(b"")


def _refused(actions: MilterActions, verdict: Verdict, reply: SmtpReply,
             flags: frozenset[str] = frozenset()) -> Applied:
    """Refuse a message the verdict delivers, by a limit of the milter's own."""
    send_reply(actions, reply)
    refused = replace(verdict, decision=Reject(reply), edits=(), changes=())
    return Applied(Outcome.REJECT, reply, refused, flags)


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
    if message.local and any(isinstance(edit, DeleteRecipient) for edit in verdict.edits):
        # Past max_recipients: refused whole, as Postfix defers a local submission one of
        # whose recipients a milter refuses, and pickup retries it forever.
        return _refused(actions, verdict, Reply.TOO_MANY_LOCAL_RECIPIENTS.reply)
    headers = _header_calls(verdict, message)
    # Checked before the first edit: libmilter cannot take an edit back.
    deleted = Counter(call.name for call in headers if call.deletes)
    if deleted.total() > MAX_HEADER_DELETIONS:
        log.warning("refused (its verdict: %s): %d header deletions needed, past %d (%s)",
                    decision.action.value, deleted.total(), MAX_HEADER_DELETIONS,
                    ", ".join(f"{name} x{count}" for name, count in deleted.most_common()))
        return _refused(actions, verdict, TOO_MANY_HEADER_DELETIONS,
                        frozenset({HEADER_DELETIONS_FLAG}))
    for call in headers:
        if call.index is None:
            actions.addheader(call.name, call.value)
        else:
            actions.chgheader(call.name, call.index, call.value)
    for address in recipients_to_delete(verdict, message.recipients):
        actions.delrcpt(f"<{_routeless(address)}>")
    _replace_body(actions, verdict)
    if isinstance(decision, Quarantine):
        actions.quarantine(decision.reason or "postwarden")
    return Applied(Outcome.CONTINUE, None)
