"""Accepting a message: one transaction writes everything or nothing.

The message, its recipients, its first timeline event and the outbox row go
in with one statement; then the idempotency record, then the usage counters
(:mod:`.limits`, which lock the key's counter rows last, just before the
commit). A limit that is reached rolls the whole transaction back, so a
refused request leaves no trace but its log line.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from . import idempotency, limits
from .request_model import SendRequest

INSERT_MESSAGE = """
WITH message AS (
    INSERT INTO outbound_messages
        (id, key_id, message_id, sender, subject, recipient_count, size, tags, metadata,
         created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, cardinality($9::text[]), octet_length($11::bytea), $6, $7, $8, $8)
), recipients AS (
    INSERT INTO outbound_recipients (message_id, address, kind, updated_at)
    SELECT $1, address, kind, $8 FROM unnest($9::text[], $10::text[]) AS r (address, kind)
), event AS (
    INSERT INTO outbound_events (message_id, time, event) VALUES ($1, $8, 'accepted')
)
INSERT INTO outbox (message_id, envelope_from, recipients, content, next_attempt_at)
VALUES ($1, $4, $9, $11::bytea, $8)
"""


@dataclass(frozen=True, slots=True)
class Accepted:
    id: uuid.UUID
    message_id: str

    @property
    def location(self) -> str:
        return f"/api/v1/messages/{self.id}"

    def body(self) -> dict[str, Any]:
        return {"id": str(self.id), "message_id": self.message_id, "status": "queued"}


@dataclass(frozen=True, slots=True)
class Submission:
    """Everything the enqueue transaction needs about one accepted request."""

    key_id: str
    request: SendRequest
    message_id: str
    content: bytes
    recipient_hashes: list[str]
    idempotency_key: str | None = None


def _kinds(request: SendRequest) -> tuple[list[str], list[str]]:
    """Each envelope recipient once, with the first field that named it."""
    kinds: dict[str, str] = {}
    for kind, mailboxes in (("to", request.to), ("cc", request.cc), ("bcc", request.bcc)):
        for mailbox in mailboxes:
            kinds.setdefault(mailbox.address, kind)
    return list(kinds), list(kinds.values())


async def enqueue(
    conn: asyncpg.Connection, submission: Submission, quota: limits.Limits, now: dt.datetime
) -> Accepted:
    """Store the message for the relay worker; raises limits.LimitReached (nothing stored)."""
    accepted = Accepted(uuid.uuid4(), submission.message_id)
    request = submission.request
    addresses, kinds = _kinds(request)
    async with conn.transaction():
        await conn.execute(
            INSERT_MESSAGE, accepted.id, submission.key_id, submission.message_id,
            request.sender.address, request.subject, list(request.tags), request.metadata, now,
            addresses, kinds, submission.content,
        )
        if submission.idempotency_key is not None:
            answer = idempotency.StoredAnswer(202, accepted.body())
            await idempotency.finish(
                conn, submission.key_id, submission.idempotency_key, answer
            )
        await limits.consume(
            conn, submission.key_id, submission.recipient_hashes, quota, now
        )
    return accepted
