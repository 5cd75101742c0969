"""Accepting a message: one statement writes everything or nothing.

``send_enqueue`` (migration 0007) checks the suppression list, counts the
usage limits (:mod:`.limits`), and stores the message, its recipients, its
first timeline event, the outbox row and the idempotency answer, all in one
statement. The service calls it through ``send_enqueue_flushed`` (migration
0017), which commits that without waiting for the disk, then waits for it to
reach the disk in a second transaction (:mod:`postwarden_admin_api.commits`),
in the same round trip. A reached limit rolls the whole statement back, so a
refused request leaves no trace but its log line.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from postwarden_admin_api.auth import unauthenticated
from postwarden_admin_api.commits import FLUSH
from postwarden_admin_api.periodic import DB_ERRORS
from postwarden_store import ending_unanswered

from . import limits
from .refusals import Refusal
from .request_model import SendRequest

# Outside a transaction block: committed without waiting for the disk, so the key's
# usage counters are not locked while the WAL is flushed, then made durable.
ENQUEUE = """
CALL send_enqueue_flushed($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                          $16, $17, $18, $19, $20, $21)
"""
# Migration 0036: the procedure refuses a stored key revoked or expired since the
# request's admission (its body may take a minute to come in); 0044: it holds the key's
# row until it commits, so a revocation is answered only after a send it did not stop.
KEY_NOT_LIVE = "key_not_live"
# Inside one the commit is the caller's (a procedure cannot commit there).
ENQUEUE_IN_TRANSACTION = """
SELECT send_enqueue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $18, $19, $20, $21)
"""

# Visible to another session: its commit is in the WAL, so a flush after it covers it.
STORED = "SELECT EXISTS (SELECT FROM outbound_messages WHERE id = $1)"
# A lost connection does not stop its backend: it may still be running the call (waiting
# for the key's counters, say) and commit after a look found nothing. Ended here, and
# waited for until it has left (true; none: already gone), its transaction can no longer
# commit. Only a backend of this role: another role's under that pid is not the one that
# ran the call (and the service's role may not signal it).
END_BACKEND = """
SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity
WHERE pid = $1 AND usename = session_user
"""
BACKEND_GONE = """
SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND usename = session_user)
"""
END_WITHIN_MS = 5000  # a signalled backend ends in milliseconds; past this, the answer is unsure


class Unconfirmed(Exception):
    """The enqueue failed short of its answer, perhaps once the message was stored
    (the connection failed while waiting for the disk, say), perhaps while its backend
    still runs the call: whether the message was stored and survives (the server may
    have crashed) is for :func:`confirm` to say, once that backend has ended. Answering
    an error instead would have a client that retries without an Idempotency-Key send
    it twice."""

    def __init__(self, accepted: Accepted, backend: int | None = None) -> None:
        super().__init__("enqueue outcome unknown")
        self.accepted = accepted
        self.backend = backend  # the pid of the backend that ran the call, if it may still run


class OutcomeUnknown(Exception):
    """Whether an :class:`Unconfirmed` enqueue stored the message cannot be told: a 500,
    never 503 ``database_unavailable``, whose Retry-After would have a client that sends
    without an Idempotency-Key send it twice."""


class Suppressed(Exception):
    """Some recipients are on the suppression list; nothing was stored."""

    def __init__(self, addresses: set[str]) -> None:
        super().__init__("recipient_suppressed")
        self.addresses = addresses


@dataclass(frozen=True, slots=True)
class Accepted:
    id: uuid.UUID
    message_id: str

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
    id: uuid.UUID = field(default_factory=uuid.uuid4)  # also the idempotency claim's id


async def enqueue(
    conn: asyncpg.Connection, submission: Submission, quota: limits.Limits
) -> Accepted:
    """Store the message for the relay worker, or raise Suppressed or limits.LimitReached.
    Its times and the limits' windows are the database clock's (migration 0048).

    Outside a transaction, as the service calls it: it returns once the message is on
    disk. Inside one (tests batch a few), the commit is the caller's and does not wait.
    """
    accepted = Accepted(submission.id, submission.message_id)
    request = submission.request
    recipients = request.recipients_by_field
    hashes = sorted(set(submission.recipient_hashes))
    in_transaction = conn.is_in_transaction()
    backend = conn.get_server_pid()  # not to be had once the connection is lost
    try:
        suppressed = await conn.fetchval(
            ENQUEUE_IN_TRANSACTION if in_transaction else ENQUEUE,
            accepted.id, submission.key_id, submission.message_id,
            request.sender.address, request.subject, list(request.tags), request.metadata,
            None,  # the time: the database's own since migration 0048
            [m.address for m, _ in recipients], [kind for _, kind in recipients],
            submission.content, [m.key for m, _ in recipients], hashes,
            None, None, None,  # the windows: likewise, since migration 0048
            quota.per_key_per_minute, quota.per_recipient_per_day, quota.per_key_per_day,
            submission.idempotency_key,
            None if submission.idempotency_key is None else accepted.body(),  # its answer
        )
    except asyncpg.RaiseError as raised:  # raised before anything was committed
        if raised.message == Refusal.IDEMPOTENCY_IN_PROGRESS.code:  # our claim was taken over
            raise Refusal.IDEMPOTENCY_IN_PROGRESS.error() from None
        if raised.message == KEY_NOT_LIVE:  # revoked or expired since the admission
            raise unauthenticated() from None
        reached = limits.refusal(raised.message, raised.detail, raised.hint)
        if reached is None:
            raise
        raise reached from None
    except DB_ERRORS as exc:
        if in_transaction:
            raise
        # The first commit may have gone through, or may yet. Closed, so that no one else
        # gets this connection (a pool's) while confirm() ends its backend.
        conn.terminate()
        raise Unconfirmed(accepted, backend) from exc
    if suppressed is not None:
        raise Suppressed(set(suppressed))
    return accepted


async def confirm(conn: asyncpg.Connection, unsure: Unconfirmed) -> Accepted:
    """On another connection after :class:`Unconfirmed`, once the backend that ran the
    call has ended: the message, now on disk, if it was stored; else the error that cut
    the first connection off. A backend that does not end in time, or a database that
    does not answer the look (frozen: the statements' command timeout), leaves the
    outcome unknown: :class:`OutcomeUnknown`, the connection then ended rather than given
    back to wait for its statement's cancel, as long again, which a frozen server never
    acknowledges."""
    try:
        with ending_unanswered(conn):
            ended = unsure.backend is None or await _terminate_backend(conn, unsure.backend)
            stored = ended and await conn.fetchval(STORED, unsure.accepted.id)
            if stored:
                await conn.execute(FLUSH)
    except DB_ERRORS as exc:
        raise OutcomeUnknown("the database did not say whether the enqueue stored the "
                             "message") from exc
    if not ended:
        raise OutcomeUnknown(f"the enqueue's backend (pid {unsure.backend}) did not end "
                             f"within {END_WITHIN_MS} ms") from unsure.__cause__
    if not stored:
        raise unsure.__cause__ or unsure
    return unsure.accepted


async def _terminate_backend(conn: asyncpg.Connection, pid: int) -> bool:
    if await conn.fetchval(END_BACKEND, pid, END_WITHIN_MS) is not False:
        return True
    # False: it did not end in time, or ended on its own just before the signal.
    return bool(await conn.fetchval(BACKEND_GONE, pid))
