"""Audit writes: COPY a batch into a temporary table, then insert what is new.

COPY is the fast path for many rows; going through a temporary table lets
``ON CONFLICT DO NOTHING`` skip events already stored, which makes replaying
the milter's spool idempotent (exactly one row per event id). The staging
table holds jsonb and inet columns as text so the binary COPY needs no
custom codecs; the casts happen in the insert-select.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from postwarden_policies import AuditEvent

COLUMNS = (
    "event_id", "time", "instance", "queue_id", "message_uid", "client_address",
    "client_name", "helo", "auth_user", "sender", "recipients", "header_from",
    "message_id", "subject", "size", "action", "smtp_reply", "rules", "changes",
    "policy_hash", "duration_ms", "flags", "notify",
)

CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS audit_events_staging (
    event_id uuid, time timestamptz, instance text, queue_id text, message_uid text,
    client_address text, client_name text, helo text, auth_user text, sender text,
    recipients text[], header_from text, message_id text, subject text, size bigint,
    action text, smtp_reply text, rules text[], changes text, policy_hash text,
    duration_ms double precision, flags text[], notify text[]
) ON COMMIT DELETE ROWS
"""

ENSURE_PARTITION = "SELECT audit_ensure_partition($1)"

INSERT_FROM_STAGING = """
INSERT INTO audit_events (
    event_id, time, instance, queue_id, message_uid, client_address, client_name, helo,
    auth_user, sender, recipients, header_from, message_id, subject, size, action,
    smtp_reply, rules, changes, policy_hash, duration_ms, flags, notify)
SELECT event_id, time, instance, queue_id, message_uid, client_address::inet, client_name,
    helo, auth_user, sender, recipients, header_from, message_id, subject, size, action,
    smtp_reply, rules, changes::jsonb, policy_hash, duration_ms, flags, notify
FROM audit_events_staging
ON CONFLICT DO NOTHING
"""


def _month(time: dt.datetime) -> dt.datetime:
    utc = time.astimezone(dt.UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _record(event: AuditEvent) -> tuple[Any, ...]:
    return (
        event.event_id, event.time, event.instance, event.queue_id, event.message_uid,
        event.client_address, event.client_name, event.helo, event.auth_user, event.sender,
        list(event.recipients), event.header_from, event.message_id, event.subject, event.size,
        event.action, event.smtp_reply, list(event.rules),
        json.dumps(list(event.changes), separators=(",", ":")), event.policy_hash,
        event.duration_ms, list(event.flags), list(event.notify),
    )


async def write_audit_events(conn: asyncpg.Connection, events: Sequence[AuditEvent]) -> int:
    """Store a batch in one transaction; returns how many rows were new."""
    if not events:
        return 0
    async with conn.transaction():
        for month in sorted({_month(event.time) for event in events}):
            await conn.execute(ENSURE_PARTITION, month)
        await conn.execute(CREATE_STAGING)
        await conn.copy_records_to_table(
            "audit_events_staging", records=[_record(e) for e in events], columns=COLUMNS
        )
        status: str = await conn.execute(INSERT_FROM_STAGING)
    return int(status.rsplit(" ", 1)[-1])
