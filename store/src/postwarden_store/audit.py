"""Audit writes: COPY a batch into a temporary table, then insert what is new.

COPY is the fast path for many rows; going through a temporary table lets
``ON CONFLICT DO NOTHING`` skip events already stored, which makes replaying
the milter's spool idempotent (exactly one row per event id). The staging
table holds jsonb and inet columns as text so the binary COPY needs no
custom codecs; the casts happen in the insert-select.

Every string is made storable first: Postgres takes no NUL and no lone
surrogate (Python's stand-in for an undecodable byte in a header) in text or
jsonb, and one such event would fail its whole batch.
"""

from __future__ import annotations

import datetime as dt
import json
import re
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


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> Any:
    """``value`` with NUL and lone surrogates replaced by U+FFFD in every string; tuples
    become lists (arrays)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


def _record(event: AuditEvent) -> tuple[Any, ...]:
    values = {column: _storable(getattr(event, column)) for column in COLUMNS}
    values["changes"] = json.dumps(values["changes"], separators=(",", ":"))
    return tuple(values[column] for column in COLUMNS)


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
