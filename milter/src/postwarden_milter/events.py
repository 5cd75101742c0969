"""Audit events built from a finished (or abandoned) transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from postwarden_policies import (
    AuditEvent,
    Change,
    MessageFacts,
    SmtpReply,
    Verdict,
    client_ip,
    redact,
)
from postwarden_store.audit import TRUNCATED

from .apply import recipients_to_delete
from .session import Client, Transaction

MAX_SUBJECT = 200
_CUT = frozenset({TRUNCATED})  # the store's flag for a row it cut


def _client_address(text: str | None) -> str | None:
    """Only a real IP goes into the inet column ("unknown" and the like do not)."""
    address = client_ip(text)
    return None if address is None else str(address)


def _header_from(address: str | None) -> str | None:
    """The From address as the row keeps it: as the parser lower-cased it (str.lower),
    but a dotted capital I (U+0130), which that makes i and a combining dot above, an
    i, as PostgreSQL's lower() makes the envelope's: the audit search compares lower()
    of each, and ``ilker@`` found the sender ``İLKER@`` but not that From."""
    return None if address is None else address.replace("i\u0307", "i")


def _subject(subject: str | None) -> tuple[str | None, frozenset[str]]:
    """The subject as the row keeps it (redacted, cut to MAX_SUBJECT), and the flag
    ``truncated`` when it was cut, as the store flags what it cuts."""
    if subject is None:
        return None, frozenset()
    text = redact(subject)
    if len(text) <= MAX_SUBJECT:
        return text, frozenset()
    return text[: MAX_SUBJECT - 1] + "…", _CUT


def change_dict(change: Change) -> dict[str, Any]:
    kind = "".join(f"_{c.lower()}" if c.isupper() else c for c in type(change).__name__)
    return {"kind": kind.lstrip("_"), **dataclasses.asdict(change)}


def _changes(transaction: Transaction, verdict: Verdict | None) -> tuple[dict[str, Any], ...]:
    """The recipients refused at RCPT and those the verdict deleted, then the verdict's
    changes, so that a row found by a recipient says when the message did not go to them
    (the store keeps a row's first changes, within a bound: those first, there are at
    most session.REFUSED_KEPT refused ones, the last counting the rest, "more")."""
    changes: list[dict[str, Any]] = [
        {"kind": "recipient_refused", "recipient": address, "reply": reply}
        for address, reply in transaction.refused]
    if transaction.refused_more:  # only past REFUSED_KEPT: the last so far is refused
        changes[-1]["more"] = transaction.refused_more
    if verdict is not None:
        changes += ({"kind": "recipient_deleted", "recipient": address}
                    for address in recipients_to_delete(verdict, transaction.recipients))
        changes += (change_dict(c) for c in verdict.changes)
    return tuple(changes)


def _flags(facts: MessageFacts | None, verdict: Verdict | None,
           extra: frozenset[str]) -> tuple[str, ...]:
    flags = set(extra)
    if facts is not None:
        flags |= facts.flags | ({"duplicate"} if facts.duplicate else set())
    if verdict is not None:
        flags |= verdict.flags | ({"report_only"} if verdict.report_only else set())
    return tuple(sorted(flags))


def build_event(
    *,
    instance: str,
    transaction: Transaction,
    client: Client,
    action: str,
    reply: SmtpReply | None,
    policy_hash: str,
    facts: MessageFacts | None = None,
    verdict: Verdict | None = None,
    flags: frozenset[str] = frozenset(),
) -> AuditEvent:
    """``flags``: besides the parser's and the verdict's (e.g. handler.STOP_DEADLINE)."""
    subject, cut = _subject(facts.subject if facts else None)
    return AuditEvent(
        event_id=uuid.uuid4().hex,
        time=dt.datetime.now(dt.UTC),
        instance=instance,
        queue_id=transaction.queue_id,
        message_uid=transaction.uid,
        client_address=_client_address(client.address),
        client_name=client.name,
        helo=client.helo,
        auth_user=transaction.auth_user,
        sender=transaction.sender,
        recipients=tuple(transaction.recipients),
        header_from=_header_from(facts.from_address) if facts else None,
        message_id=facts.message_id if facts else None,
        subject=subject,
        size=transaction.size,
        action=action,
        smtp_reply=str(reply) if reply else None,
        rules=verdict.rules if verdict else (),
        changes=_changes(transaction, verdict),
        policy_hash=policy_hash,
        duration_ms=transaction.elapsed() * 1000.0,
        flags=_flags(facts, verdict, flags | cut),
        notify=verdict.notify if verdict else (),
    )
