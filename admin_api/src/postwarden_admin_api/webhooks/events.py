"""Webhook event types, raising events, and the metadata an event may carry.

Events are rows in ``webhook_events`` with one delivery per endpoint that
wants them. Triggers (migration ``0005_webhooks.sql``) raise them in the
transaction of the change they report: milter verdicts from ``audit_events``,
``policy.activated`` and ``policy.deactivated`` from ``active_policies``
(``0022_webhook_policy_deactivated.sql``), ``send.*`` from ``outbound_events``.
Anything else (``policy.load_failed``) is raised with :func:`raise_event`, or the
SQL function ``webhook_raise(type, payload)``.

Payloads carry metadata only: each event family has a list of fields it may
carry (never a subject, body or attachment) and every string passes through
:func:`postwarden_policies.redact.redact` before it leaves the process.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from postwarden_policies.redact import MASK, names_a_secret, redact


class EventType(enum.StrEnum):
    MESSAGE_REJECTED = "message.rejected"
    MESSAGE_QUARANTINED = "message.quarantined"
    MESSAGE_SANITIZED = "message.sanitized"
    MESSAGE_ATTACHMENT_STRIPPED = "message.attachment_stripped"
    SEND_QUEUED = "send.queued"
    # In Postfix's hold queue until an administrator releases or deletes it (0032).
    SEND_HELD = "send.held"
    # An administrator let it out of the hold queue (postsuper -H) to be delivered (0033).
    SEND_RELEASED = "send.released"
    SEND_DELIVERED = "send.delivered"
    SEND_DEFERRED = "send.deferred"
    SEND_BOUNCED = "send.bounced"
    SEND_FAILED = "send.failed"
    POLICY_ACTIVATED = "policy.activated"
    POLICY_DEACTIVATED = "policy.deactivated"
    POLICY_LOAD_FAILED = "policy.load_failed"
    # Raised by the policy action `notify: <endpoint>` for the named endpoints
    # only; endpoints cannot subscribe to it.
    MESSAGE_NOTIFY = "message.notify"


SUBSCRIBABLE = frozenset(EventType) - {EventType.MESSAGE_NOTIFY}

_MESSAGE_FIELDS = frozenset({
    "audit_event_id", "time", "instance", "queue_id", "message_uid", "message_id",
    "sender", "recipients", "action", "smtp_reply", "rules", "changes", "policy_hash",
})
_CHANGE_FIELDS = frozenset({
    "kind", "type", "part", "filename", "size", "sha256", "reason", "removed",
    "bytes_before", "bytes_after",
    "recipient", "reply", "more",  # recipient_refused, recipient_deleted
})
_SEND_FIELDS = frozenset({
    "id", "message_id", "status", "queue_id", "sender", "recipient", "recipients", "attempts",
    "key_id", "tags", "metadata", "detail", "time",
    "sequence",  # the timeline event's id: orders one message's events (migration 0031)
    "logged_at",  # when Postfix logged the line the event comes from (migration 0033)
})
_POLICY_FIELDS = frozenset({
    "policy_name", "revision_id", "content_hash", "activated_by", "time", "error",
    "instance",
    "trigger", "sources",  # policy.load_failed from the milter: what reloaded, which labels
})
_FIELDS_BY_FAMILY = {"message": _MESSAGE_FIELDS, "send": _SEND_FIELDS, "policy": _POLICY_FIELDS}


def metadata(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the fields ``event_type``'s family may carry; redact every string."""
    allowed = _FIELDS_BY_FAMILY.get(event_type.partition(".")[0], frozenset())
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key not in allowed:
            continue
        if key == "changes" and isinstance(value, list):
            kept[key] = [_redacted(_change(c)) for c in value if isinstance(c, Mapping)]
        else:
            kept[key] = _redacted(value)
    return kept


def _change(change: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in change.items() if key in _CHANGE_FIELDS}


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):  # a send's metadata: {"reset_token": "..."}
        # The whole value, a list or an object too ({"password": ["..."]}); null holds none.
        return {str(key): MASK if names_a_secret(str(key)) and item is not None
                else _redacted(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [_redacted(item) for item in value]
    return value


# Every time of a payload in one format, RFC 3339 in UTC with six fractional digits: a
# receiver parses with one strict format. isoformat() leaves out a zero fraction, and
# PostgreSQL's jsonb (data.time) writes as many digits as a time needs, and +00:00.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIME_FIELDS = ("time", "logged_at")


def payload_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(TIME_FORMAT)


def _restamped(value: Any) -> Any:
    """A time of the data (as jsonb or str() wrote it) in :data:`TIME_FORMAT`; anything
    else as it is (null; a time without a zone, which no source writes)."""
    if not isinstance(value, str):
        return value
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return value if moment.tzinfo is None else payload_time(moment)


def envelope(event_type: str, created_at: dt.datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload shape: type, timestamp, data. Times are formatted
    here, at delivery, so events stored before are sent alike."""
    kept = metadata(event_type, data)
    for key in _TIME_FIELDS:
        if key in kept:
            kept[key] = _restamped(kept[key])
    return {"type": event_type, "timestamp": payload_time(created_at), "data": kept}


RAISE = "SELECT webhook_raise($1, $2::text::jsonb, $3::text[])"


async def raise_event(
    conn: asyncpg.Connection,
    event_type: EventType | str,
    payload: Mapping[str, Any],
    targets: Sequence[str] | None = None,
) -> int | None:
    """Raise an event for every enabled endpoint subscribed to it (or the named ``targets``).

    Call it inside the transaction that makes the change (policy activation,
    outbox status), so the event is stored exactly when the change is. Fields
    outside the event family's metadata are dropped here, before storage.
    Returns the event row id, or None when no endpoint wants the event.
    """
    kind = EventType(event_type)
    # Sent as text so the call works on a connection without the pool's JSON codecs.
    data = json.dumps(metadata(kind, payload), default=str)
    event_id: int | None = await conn.fetchval(
        RAISE, kind.value, data, None if targets is None else list(targets)
    )
    return event_id
