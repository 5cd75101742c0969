"""Audit writes: COPY a batch into a temporary table, then insert what is new.

COPY is the fast path for many rows; going through a temporary table lets
``ON CONFLICT DO NOTHING`` skip events already stored, which makes replaying
the milter's spool idempotent (exactly one row per event id). The staging
table holds jsonb and inet columns as text so the binary COPY needs no
custom codecs; the casts happen in the insert-select.

Every event is made storable first (:func:`stored_values`), since one event
Postgres refuses would fail its whole batch: it takes no NUL and no lone
surrogate (Python's stand-in for an undecodable byte in a header) in text or
jsonb, and no btree or GIN index entry over about 2.7 KB, which a sender's
Message-ID, address or HELO can exceed. Values a sender chooses are therefore
cut to a length every index takes, and ``changes`` (a stripped attachment's
file name is the sender's too) to a weight any batch writes quickly; a row
so cut carries the flag ``truncated``. The inet column takes no IPv6 zone
(``fe80::1%eth0``, which Python reads as an address, from an MTA's
``{client_addr}``; Postfix strips it) and no text that is no address (a spool
written by hand, say): the zone is dropped, and such text stored as no address.

A batch waits at most ``lock_timeout`` (:data:`LOCK_TIMEOUT`) for a lock,
such as the parent table's that retention's DROP of an old partition queues
for: the milter spools and retries then instead of waiting its whole write
timeout, queued behind the DROP.

A batch commits once its rows are on disk, whatever the server's
``synchronous_commit``: with it ``off`` (a common tuning) a commit is
acknowledged before its WAL is flushed and a crash can lose it, while the
milter, told the batch is stored, no longer spools it. So ``off`` becomes
``local`` for the batch's transaction (:data:`DURABLE_COMMIT`): the local flush,
and no wait for a synchronous standby, which a role set ``off`` may be set so to
avoid. ``on`` and the ``remote_*`` values wait for the local flush already and
stay as the server or role set them. The milter's probe of a slow database
commits the same way, so that it waits for what a batch waits for.

Retention's drops stay dropped: an event of a month before the first one
retention keeps (a spooled event replayed after a long outage, say) is not
written, and its month's partition is not made again; :func:`write_audit_batch`
counts it as expired. ``audit_ensure_partition`` decides, and locks what it
read until the batch commits (migration 0023), so no batch writes into a month
retention is dropping.

A policy's ``notify`` naming a webhook endpoint that does not exist (never made,
renamed, deleted) raises nothing for it (``webhook_raise`` finds no endpoint of the
name), silently: :func:`write_audit_batch` counts such names for the milter to log.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from postwarden_policies import AuditEvent, client_ip

COLUMNS = (
    "event_id", "time", "instance", "queue_id", "message_uid", "client_address",
    "client_name", "helo", "auth_user", "sender", "recipients", "header_from",
    "message_id", "subject", "size", "action", "smtp_reply", "rules", "changes",
    "policy_hash", "duration_ms", "flags", "notify",
)

# Every index entry fits: btree and GIN take up to 2704 bytes, and lower() (the
# sender and recipient indexes) makes a character at most 1.5 times longer in UTF-8.
TEXT_MAX = 998  # characters: an RFC 5322 line, and the longest value the audit search takes
TEXT_MAX_BYTES = 1600  # UTF-8
BOUNDED_TEXT = ("queue_id", "client_name", "helo", "auth_user", "sender", "header_from",
                "message_id")
BOUNDED_ARRAYS = ("recipients", "rules")  # each element
CHANGE_TEXT_MAX = 255  # characters of each string in ``changes`` (a file name, say)
CHANGES_MAX = 1000  # entries, as many as the MIME parser takes parts
CHANGES_MAX_BYTES = 128 * 1024  # of their JSON
TRUNCATED = "truncated"
ELLIPSIS = "\u2026"

LOCK_TIMEOUT = "1s"

# A commit that waits for its WAL on the local disk (see the module's docstring): off
# becomes local, any other setting waits for it already and stays.
_DURABLE = ("set_config('synchronous_commit', CASE current_setting('synchronous_commit') "
            "WHEN 'off' THEN 'local' ELSE current_setting('synchronous_commit') END, true)")
DURABLE_COMMIT = f"SELECT {_DURABLE}"
# In one round trip: the batch's lock timeout, and its durable commit.
SET_BATCH_SETTINGS = f"SELECT set_config('lock_timeout', $1, true), {_DURABLE}"

CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS audit_events_staging (
    event_id uuid, time timestamptz, instance text, queue_id text, message_uid text,
    client_address text, client_name text, helo text, auth_user text, sender text,
    recipients text[], header_from text, message_id text, subject text, size bigint,
    action text, smtp_reply text, rules text[], changes text, policy_hash text,
    duration_ms double precision, flags text[], notify text[]
) ON COMMIT DELETE ROWS
"""

# The partition's name; NULL for a month retention dropped.
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
RETURNING event_id
"""


def _month(time: dt.datetime) -> dt.datetime:
    utc = time.astimezone(dt.UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """``value`` with ``change`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list | tuple):
        return type(value)(_map_strings(item, change) for item in value)
    if isinstance(value, dict):
        return {_map_strings(key, change): _map_strings(item, change)
                for key, item in value.items()}
    return value


def _sanitized(text: str) -> str:
    """NUL and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _inet(text: object) -> str | None:
    """The client address as the inet column takes it (:func:`client_ip`'s form, without
    a zone); None for text that is no address, or a value that is no text (a spool's
    JSON may hold any)."""
    address = client_ip(text.partition("%")[0]) if isinstance(text, str) else None
    return None if address is None else str(address)


def _cut(text: str, max_chars: int, max_bytes: int) -> str:
    """``text`` if it fits, else its start and an ellipsis within both limits."""
    if len(text) <= max_bytes // 4 or (  # at most 4 UTF-8 bytes a character: fits
            len(text) <= max_chars and len(text.encode("utf-8")) <= max_bytes):
        return text
    start = text[: max_chars - 1].encode("utf-8")[: max_bytes - len(ELLIPSIS.encode("utf-8"))]
    return start.decode("utf-8", "ignore") + ELLIPSIS


def _bounded(text: str) -> str:
    return _cut(text, TEXT_MAX, TEXT_MAX_BYTES)


def _bounded_change(text: str) -> str:
    return _cut(text, CHANGE_TEXT_MAX, 4 * CHANGE_TEXT_MAX)


def _bounded_changes(changes: Sequence[Any]) -> tuple[Any, ...]:
    """The first entries, each string cut, within :data:`CHANGES_MAX` and
    :data:`CHANGES_MAX_BYTES`."""
    kept: list[Any] = []
    size = 0
    for change in changes[:CHANGES_MAX]:
        entry = _map_strings(change, _bounded_change)
        size += len(json.dumps(entry, separators=(",", ":")))
        if size > CHANGES_MAX_BYTES:
            break
        kept.append(entry)
    return tuple(kept)


def stored_values(event: AuditEvent) -> dict[str, Any]:
    """``event``'s column values as Postgres stores them: its strings sanitized
    (:func:`_sanitized`), the values a sender chooses cut to what every index takes and
    ``changes`` to a bounded weight; flagged ``truncated`` when anything was cut; the
    client address as inet takes it (:func:`_inet`)."""
    clean = {column: _map_strings(getattr(event, column), _sanitized) for column in COLUMNS}
    clean["client_address"] = _inet(clean["client_address"])
    cut: dict[str, Any] = {column: _bounded(clean[column]) for column in BOUNDED_TEXT
                           if clean[column] is not None}
    cut |= {column: tuple(_bounded(item) for item in clean[column]) for column in BOUNDED_ARRAYS}
    if clean["changes"]:
        cut["changes"] = _bounded_changes(clean["changes"])
    if any(cut[column] != clean[column] for column in cut):
        clean["flags"] = tuple(sorted({*clean["flags"], TRUNCATED}))
    return clean | cut


def weight(event: AuditEvent) -> int:
    """About the bytes ``event`` weighs once stored, without encoding it (a batch is
    capped by it): its bounded values at their bound, a change at most about 1 KiB."""
    texts = [getattr(event, column) or "" for column in BOUNDED_TEXT]
    texts += [item for column in BOUNDED_ARRAYS for item in getattr(event, column)]
    changes = min(len(event.changes) * 1024, CHANGES_MAX_BYTES)
    bounded = sum(min(len(text), TEXT_MAX_BYTES) for text in texts)
    return 512 + len(event.subject or "") + bounded + changes


def _record(event: AuditEvent) -> tuple[Any, ...]:
    """The row of :func:`stored_values`, for the COPY. ValueError for a value of a type
    its column does not hold (from a spool's JSON, which may hold any), as asyncpg
    raises for one it cannot encode: the milter sets the event aside, where the
    TypeError held back every write behind it, the spool's replay retrying it for ever."""
    try:
        values = stored_values(event)
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"audit event {event.event_id}: a value of the wrong type") from exc
    values["changes"] = json.dumps(values["changes"], separators=(",", ":"))
    return tuple(values[column] for column in COLUMNS)


# The batch's notify names (one per event naming it) that no webhook endpoint has.
UNKNOWN_NOTIFY = """
SELECT n, count(*)::int FROM unnest($1::text[]) n
WHERE NOT EXISTS (SELECT FROM webhook_endpoints WHERE name = n)
GROUP BY n ORDER BY n
"""


COUNT_STORED = "SELECT count(*) FROM audit_events WHERE event_id = ANY($1::uuid[])"


@dataclass(frozen=True, slots=True)
class Written:
    """What a batch came to: rows new to the log, events retention had expired, the
    webhook endpoints its events' notify named that do not exist, with how many events
    named each, and the ids (as the events give them) of those it found stored already."""

    new: int
    expired: int
    unknown_notify: tuple[tuple[str, int], ...] = ()
    found: frozenset[str] = frozenset()


async def write_audit_batch(conn: asyncpg.Connection, events: Sequence[AuditEvent]) -> Written:
    """Store a batch in one transaction, but not its events of a month retention dropped
    (for which ``audit_ensure_partition`` makes no partition and answers NULL)."""
    if not events:
        return Written(0, 0)
    records = [(_month(event.time), event.event_id, _record(event)) for event in events]
    async with conn.transaction():
        await conn.execute(SET_BATCH_SETTINGS, LOCK_TIMEOUT)
        dropped = set()
        for month in sorted({month for month, _, _ in records}):  # every writer in one order
            if await conn.fetchval(ENSURE_PARTITION, month) is None:
                dropped.add(month)
        kept = [(event_id, record) for month, event_id, record in records
                if month not in dropped]
        new = await _insert(conn, [record for _, record in kept]) if kept else set()
        names = [name for event in events if _month(event.time) not in dropped
                 for name in event.notify]
        unknown = await conn.fetch(UNKNOWN_NOTIFY, names) if names else []
    # Ids asyncpg took as uuid text, which uuid.UUID reads as well.
    found = frozenset(event_id for event_id, _ in kept if uuid.UUID(event_id) not in new)
    return Written(len(new), len(records) - len(kept), tuple((n, c) for n, c in unknown),
                   found)


async def count_stored(conn: asyncpg.Connection, events: Sequence[AuditEvent]) -> int:
    """How many of ``events`` are in the log (by the event_id index: every partition)."""
    return int(await conn.fetchval(COUNT_STORED, [event.event_id for event in events]))


async def _insert(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> set[uuid.UUID]:
    """The event ids of the rows new to the log."""
    await conn.execute(CREATE_STAGING)
    await conn.copy_records_to_table("audit_events_staging", records=records, columns=COLUMNS)
    return {row[0] for row in await conn.fetch(INSERT_FROM_STAGING)}
