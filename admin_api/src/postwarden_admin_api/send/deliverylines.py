"""The lines of Postfix's log that say what became of a message's recipients.

A delivery agent's line is about one recipient: ``QID: to=<a@b>, relay=...,
dsn=5.1.1, status=bounced (host ... said: 550 5.1.1 ...)`` makes it
``delivered``, ``deferred`` or ``bounced`` with the (redacted) remote reply;
``status=SOFTBOUNCE`` (``soft_bounce = yes``: a bounce Postfix turned into a
deferral, dsn 4.x.x, the reply still the remote 5xx) makes it ``deferred``: it
is retried, and never suppresses. Any other status (:class:`UnknownStatus`) is
no result: the follower warns of it. Some lines are about the whole message,
and matter for the recipients that will never get a line of their own
(migration 0015):

- qmgr's ``QID: from=<...>, status=expired, returned to sender``: the
  deferred recipients are given up on (``maximal_queue_lifetime``);
- cleanup's or smtpd's ``QID: discard: ...`` or ``QID: milter-discard: ...``:
  the message was dropped after Postfix answered 250;
- postsuper's ``QID: removed``: an administrator deleted it (``deleted``);
- postsuper's ``QID: placed on hold`` (``held``) or ``QID: released from
  hold`` (``released``): an administrator put it in the hold queue, or let it
  out to be delivered;
- qmgr's ``QID: removed``: Postfix is done with every recipient it took
  (``removed``), so one left without a line was refused at RCPT, which only
  matters where the relay read Postfix's answer from the log;
- cleanup's or smtpd's ``QID: hold: ...`` or ``QID: milter-hold: ...``: it
  waits in the hold queue.

smtpd's DISCARD or HOLD at a message's first accepted recipient, before its queue
file opens, names no queue id (``NOQUEUE: discard: RCPT from ...``):
:mod:`.noqueuestops` ties it to the queue id the process's next line opens.

pickup's ``NEWQID: uid=... from=<...> orig_id=QID`` (:class:`Requeued`) says an
administrator requeued the message (``postsuper -r``): its later lines name
NEWQID.

Only the kind of a discard or hold is kept, never the rest of its line: it
quotes the header that matched (a Subject, say) and the envelope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .scrub import scrub_reply
from .syslogline import LogLine

# Only a delivery agent's line is about a recipient (see .syslogline).
_AGENTS = frozenset({"smtp", "lmtp", "local", "virtual", "pipe", "error", "retry", "discard"})
# An address as Postfix logs it: a quoted local part may hold ">" and ", ". Its repeats
# are possessive (nothing after them takes what they take) and the fields below a lazy
# run of characters: sre kept a backtracking point a character otherwise, 700 MB for
# a 4 MB line (up to MAX_READ is parsed at once).
_ADDRESS = r'(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"|[^<>"]++)*+'
_DELIVERY = re.compile(
    rf"(?P<queue_id>[0-9A-Za-z]+): to=<(?P<to>{_ADDRESS})>,"
    # The address we gave, when Postfix rewrote it (virtual or canonical maps).
    rf"(?: orig_to=<(?P<orig_to>{_ADDRESS})>,)?"
    # Postfix's own fields, up to its status: never the reply's text, even when a
    # line cut short lacks the reply's closing parenthesis.
    r"(?P<fields>.*?) status=(?P<status>[\w-]+)"
    r"(?: \((?P<reply>.*?)\)?)?\s*$"
)
_DSN = re.compile(r"\bdsn=(\d\.\d{1,3}\.\d{1,3})")
STATUSES = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced",
            "SOFTBOUNCE": "deferred"}
# Address verification probes' results: Postfix's own probe messages, never ours.
_PROBES = frozenset({"deliverable", "undeliverable", "undeliverable-but-not-cached"})
# X.1.x details that do not say the recipient's address is bad: 5 destination address
# valid, 7 and 8 the sender's mailbox or system, 9 relayed to a non-compliant mailer.
_NOT_GONE = frozenset({5, 7, 8, 9})

_EXPIRED = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): from=<.*>, status=expired, "
                      r"returned to sender\s*")
_REMOVED = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): removed\s*")
NOQUEUE = "NOQUEUE"  # what smtpd logs for the queue id of a message before it has one
_STOPPED = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): (?P<milter>milter-)?(?P<action>hold|discard): ")
# pickup's, the whole line: a sender (any local user's, through sendmail) cannot end in one.
_REQUEUED = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): uid=\d+ from=<.*> "
                       r"orig_id=(?P<orig_id>[0-9A-Za-z]+)\s*")
# postsuper's own lines (-h, -H); its summary ("Placed on hold: 1 message") names no queue id.
_HOLD_MOVE = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): (?P<move>placed on|released from) hold\s*")
EXPIRED_DETAIL = "expired in Postfix's queue, returned to the sender"
DELETED_DETAIL = "deleted from Postfix's queue before it was delivered here"
REMOVED_DETAIL = "not taken by Postfix: refused in an attempt whose replies were lost"
_STOPPED_DETAIL = {
    ("hold", True): "held in Postfix's hold queue by a milter",
    ("hold", False): "held in Postfix's hold queue by its checks",
    ("discard", True): "discarded by a milter",
    ("discard", False): "discarded by Postfix's checks",
}
_STOPPED_STATUS = {"hold": "held", "discard": "discarded"}
_HOLD_MOVES = {
    "placed on": ("held", "held in Postfix's hold queue by an administrator"),
    "released from": ("released", "released from Postfix's hold queue by an administrator"),
}


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    queue_id: str
    # As the relay gave it; None for a line about the whole message.
    recipient: str | None
    # delivered | deferred | bounced; for the whole message expired | discarded |
    # deleted | removed | held | released.
    status: str
    dsn: str
    reply: str  # the remote reply, or what a line about the whole message means
    rewritten: bool = False  # Postfix delivered to another address (an alias's member)
    # When the line says it was logged (seconds since the epoch: syslogline.logged_at);
    # set by the follower, None where its stamp was not read.
    logged_at: float | None = None
    # A delivered line that is a hand-over to a content filter: the queue id the message
    # goes on under (.handovers). No result for its recipient.
    handed_to: str | None = None

    @property
    def hard_bounce(self) -> bool:
        """The address itself is gone (:func:`address_gone`): not when one member of an
        alias is."""
        return self.status == "bounced" and address_gone(self.dsn) and not self.rewritten


@dataclass(frozen=True, slots=True)
class UnknownStatus:
    """A delivery agent's line whose status this version does not know: no result for
    its recipient. Only its queue id and status are kept (the rest is an address and a
    remote reply)."""

    queue_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Requeued:
    """The message Postfix queued as ``queue_id`` is queued again as ``new_queue_id``
    (``postsuper -r``, then pickup)."""

    queue_id: str
    new_queue_id: str


def address_gone(dsn: str) -> bool:
    """Whether a permanent status says the address itself is bad, so that no later
    message to it can be delivered either (RFC 3463, RFC 7505): a 5.1.x addressing
    status (no such mailbox or domain, bad syntax, moved, a null MX; see
    ``_NOT_GONE``) or 5.2.1 (mailbox disabled). Any other is about this message or
    passes: refused as spam (5.7.1), mailbox full (5.2.2), too large (5.3.4), a loop
    (5.4.6)."""
    parts = dsn.split(".")
    if len(parts) != 3 or not all(part.isdecimal() for part in parts):
        return False  # none: a line about the whole message
    klass, subject, detail = (int(part) for part in parts)
    return klass == 5 and ((subject == 1 and detail not in _NOT_GONE)
                           or (subject, detail) == (2, 1))


def parse_line(line: LogLine) -> DeliveryEvent | UnknownStatus | Requeued | None:
    """What ``line`` says about a message's recipients, if anything."""
    if line.daemon in _AGENTS:
        return _delivery(line)
    if line.daemon == "pickup":
        if requeued := _REQUEUED.fullmatch(line.text, line.start):
            return Requeued(requeued["orig_id"], requeued["queue_id"])
        return None
    return _about_message(line)


def _delivery(line: LogLine) -> DeliveryEvent | UnknownStatus | None:
    match = _DELIVERY.match(line.text, line.start)
    # The status is the first: one further on, past a first one malformed, is text.
    if match is None or " status=" in match["fields"] or match["status"] in _PROBES:
        return None
    if match["status"] not in STATUSES:
        return UnknownStatus(match["queue_id"], match["status"])
    dsn = _DSN.search(match["fields"])
    return DeliveryEvent(
        match["queue_id"], match["orig_to"] or match["to"], STATUSES[match["status"]],
        dsn.group(1) if dsn else "", scrub_reply(match["reply"] or ""),
        rewritten=match["orig_to"] is not None,
    )


def _about_message(line: LogLine) -> DeliveryEvent | None:
    text, start, daemon = line.text, line.start, line.daemon
    if daemon in ("cleanup", "smtpd"):
        # NOQUEUE: before the queue file opened, no queue id (.noqueuestops): such a
        # line waited for one named "NOQUEUE", asked of the database at every poll.
        if (stopped := _STOPPED.match(text, start)) is None or stopped["queue_id"] == NOQUEUE:
            return None
        return stopped_by(stopped["queue_id"], stopped["action"], stopped["milter"] is not None)
    if daemon == "postsuper":
        return _by_postsuper(text, start)
    if daemon != "qmgr":
        return None
    if removed := _REMOVED.fullmatch(text, start):
        return DeliveryEvent(removed["queue_id"], None, "removed", "", REMOVED_DETAIL)
    if expired := _EXPIRED.fullmatch(text, start):
        return DeliveryEvent(expired["queue_id"], None, "expired", "", EXPIRED_DETAIL)
    return None


def stopped_by(queue_id: str, action: str, milter: bool) -> DeliveryEvent:
    """The message queued as ``queue_id`` discarded or held (``action``) by a milter, or
    by Postfix's checks."""
    return DeliveryEvent(queue_id, None, _STOPPED_STATUS[action], "",
                         _STOPPED_DETAIL[action, milter])


def _by_postsuper(text: str, start: int) -> DeliveryEvent | None:
    """An administrator's ``postsuper -d``, ``-h`` or ``-H`` of one message."""
    if deleted := _REMOVED.fullmatch(text, start):
        return DeliveryEvent(deleted["queue_id"], None, "deleted", "", DELETED_DETAIL)
    if moved := _HOLD_MOVE.fullmatch(text, start):
        status, detail = _HOLD_MOVES[moved["move"]]
        return DeliveryEvent(moved["queue_id"], None, status, "", detail)
    return None
