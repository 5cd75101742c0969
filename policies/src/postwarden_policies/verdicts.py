"""What the engine decides: frozen values that adapters turn into SMTP answers.

A :class:`Verdict` carries one terminal :data:`Decision`, the :data:`Edit`
values to apply to the message, the :data:`Change` records that describe what
the sanitizer did (for audit rows and ``--diff``), the names of the rules
that matched and the hash of the policy set that decided.

Exactly one adapter per process maps these values to the outside world
(``postwarden_milter.apply`` for libmilter, the API's policy-test route for JSON).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """An SMTP reply: basic code, RFC 3463 enhanced status code and text."""

    code: str
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


class Reply(enum.Enum):
    """The replies postwarden gives, each paired with its enhanced status code."""

    REJECTED = SmtpReply("550", "5.7.1", "Message rejected by policy")
    TEMPFAIL = SmtpReply("451", "4.7.1", "Message deferred by policy, try again later")
    MESSAGE_TOO_BIG = SmtpReply("552", "5.3.4", "Message size exceeds fixed limit")
    TOO_MANY_RECIPIENTS = SmtpReply("452", "4.5.3", "Too many recipients")
    # A local submission (sendmail) is refused whole: Postfix can refuse none of its
    # recipients alone, and the sender learns of it from the bounce.
    TOO_MANY_LOCAL_RECIPIENTS = SmtpReply("550", "5.5.3", "Too many recipients")
    TOO_MANY_PARTS = SmtpReply("554", "5.6.0", "Message structure too complex")
    INTERNAL_ERROR = SmtpReply("451", "4.3.0", "Temporary internal error, try again later")
    OVERLOADED = SmtpReply("421", "4.3.2", "Service busy, try again later")
    # At end of message: the content came past the bound (the session may go on).
    BUSY = SmtpReply("451", "4.3.2", "Service busy, try again later")

    @property
    def reply(self) -> SmtpReply:
        value: SmtpReply = self.value
        return value


class Action(enum.StrEnum):
    """The terminal action names, as they appear in policy files and audit rows."""

    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"
    QUARANTINE = "quarantine"


# After these nothing is delivered: no header edit, stripped file or output to speak of.
NOT_DELIVERED = frozenset({Action.REJECT, Action.TEMPFAIL, Action.DISCARD})


# --- terminal decisions ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accept:
    action: Action = field(default=Action.ACCEPT, init=False)


@dataclass(frozen=True, slots=True)
class Reject:
    reply: SmtpReply = Reply.REJECTED.reply
    action: Action = field(default=Action.REJECT, init=False)


@dataclass(frozen=True, slots=True)
class TempFail:
    reply: SmtpReply = Reply.TEMPFAIL.reply
    action: Action = field(default=Action.TEMPFAIL, init=False)


@dataclass(frozen=True, slots=True)
class Discard:
    action: Action = field(default=Action.DISCARD, init=False)


@dataclass(frozen=True, slots=True)
class Quarantine:
    reason: str
    action: Action = field(default=Action.QUARANTINE, init=False)


Decision = Accept | Reject | TempFail | Discard | Quarantine


# --- edits to the message ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddHeader:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class RemoveHeader:
    """Remove every occurrence of ``name`` (case-insensitive)."""

    name: str


@dataclass(frozen=True, slots=True)
class ChangeHeader:
    """Replace the ``index``-th (1-based, among same-named headers) value of ``name``."""

    name: str
    index: int
    value: str


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    """The new body (everything after the header section), CRLF line endings."""

    body: bytes


@dataclass(frozen=True, slots=True)
class DeleteRecipient:
    address: str


Edit = AddHeader | RemoveHeader | ChangeHeader | ReplaceBody | DeleteRecipient


# --- what the sanitizer changed (reported, not applied) ---------------------


@dataclass(frozen=True, slots=True)
class AttachmentStripped:
    part: str  # MIME path such as "1.2"
    filename: str
    size: int
    sha256: str
    reason: str  # the rule name, or "max_attachment_bytes"


@dataclass(frozen=True, slots=True)
class HtmlSanitized:
    part: str
    removed: tuple[tuple[str, int], ...]  # (what, count), e.g. ("script", 2)
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True, slots=True)
class SignedHtmlKept:
    """A signed part left as it came (``signed_mail: skip``), signature intact: all
    sanitizing would have changed in it was harmless (:mod:`.signedhtml`)."""

    part: str
    removed: tuple[tuple[str, int], ...]  # what sanitizing would have removed, as counted


Change = AttachmentStripped | HtmlSanitized | SignedHtmlKept


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    edits: tuple[Edit, ...] = ()
    changes: tuple[Change, ...] = ()
    rules: tuple[str, ...] = ()
    policy_hash: str = ""
    flags: frozenset[str] = frozenset()
    report_only: bool = False  # a report-mode policy matched: logged, none of its actions applied
    notify: tuple[str, ...] = ()  # webhook endpoint names raised by `notify:` actions

    @property
    def action(self) -> Action:
        return self.decision.action

    @property
    def smtp_reply(self) -> SmtpReply | None:
        """The reply sent to the client, when the decision carries one."""
        if isinstance(self.decision, Reject | TempFail):
            return self.decision.reply
        return None

    @property
    def body_changed(self) -> bool:
        return any(isinstance(edit, ReplaceBody) for edit in self.edits)
