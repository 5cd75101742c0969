"""Storing what came of a relay attempt: ``relayed``, ``deferred`` (retried with
exponential backoff and jitter) or ``failed``, each with its event on the message's
timeline, and a ``failed`` event on the timeline of each recipient the relay's answer
fails (refused at RCPT, or with the whole message), which raises its ``send.failed``
webhook as a bounce's line does; the claimed rows and the relay's settings they are
stored with.

The relay worker (:mod:`.relay`) stores 250s through :func:`store_relayed`, several
in one round trip (:mod:`.groupcommit`), and every other answer through
:func:`record`.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid
from dataclasses import dataclass

import asyncpg

from postwarden_admin_api.backoff import doubled

from .receipts import Commit
from .scrub import for_log, scrub_reply
from .submit import Outcome, SubmitResult

log = logging.getLogger(__name__)

# $7: Postfix's answer was read from its log after an interrupted attempt, so which
# recipients it refused at RCPT is unknown: the timeline says so, and the recipients
# left without a line when qmgr removes the message were those (migration 0015).
# $4, $5: the recipients refused at RCPT and each one's reply. Only a recipient still
# queued changes, and gets its event: one per recipient and outcome, however often
# the outcome is stored. $2 NULL: Postfix's 250 named no queue id (untracked_detail).
# Only while the outbox row is there: a worker cut off from Postgres past its lease
# stores its 250 late, once the claim that took the row over has settled it (from the
# log) and the message moved on (delivered); it would set the message back and raise
# send.queued again. The message's rows gone (a lost commit), the 'relayed' event is
# still written, and its foreign key says so (RelayWorker._no_longer_stored). Unless
# the log reader already read the message's arrival under the queue id (its receipt,
# read in this statement's snapshot, before the row's deletion drops it), the queue id
# is marked until it does (migration 0055: .deliveryapply).
RELAYED = """
WITH done AS (
    DELETE FROM outbox WHERE message_id = $1 RETURNING message_id
), found AS (
    INSERT INTO outbound_events (message_id, event)
    SELECT message_id, 'found_in_log' FROM done WHERE $7
), message AS (
    UPDATE outbound_messages
    SET status = CASE WHEN $2::text IS NULL THEN 'untracked' ELSE 'relayed' END,
        queue_id = $2, queue_host = $8, attempts = $3, last_error = NULL, updated_at = now(),
        queue_arrival_mark = CASE WHEN $2::text IS NULL OR EXISTS (
            SELECT FROM relay_receipts r
            WHERE r.message_id = $1 AND r.queue_id = $2 AND (r.host = $8 OR $8 IS NULL)
        ) THEN NULL ELSE nextval('maillog_reads') END
    WHERE id IN (SELECT message_id FROM done)
), recipients AS (
    UPDATE outbound_recipients
    SET status = CASE WHEN address = ANY($4::text[]) THEN 'failed' ELSE 'relayed' END,
        detail = ($5::text[])[array_position($4::text[], address)],
        updated_at = now()
    WHERE message_id IN (SELECT message_id FROM done) AND status = 'queued'
    RETURNING address, status, detail
)
INSERT INTO outbound_events (message_id, recipient, event, detail)
SELECT $1, address, 'failed', detail FROM recipients WHERE status = 'failed'
UNION ALL
SELECT $1, NULL, 'relayed', $6
WHERE EXISTS (SELECT FROM done) OR NOT EXISTS (SELECT FROM outbound_messages WHERE id = $1)
"""
# RETRY and FAILED store only while the row is still this claim's ($2: its attempts, as
# the relay's UNLEASE): a lease that ran out, Postgres away, may have let another worker
# claim it meanwhile, and that claim's attempt decides (an interrupted one: the log).
RETRY = """
WITH later AS (
    UPDATE outbox SET next_attempt_at = now() + $3::interval, unsettled = $5,
                      claimed_by = NULL
    WHERE message_id = $1 AND attempts = $2
    RETURNING message_id
), message AS (
    UPDATE outbound_messages SET attempts = $2, last_error = $4, updated_at = now()
    WHERE id IN (SELECT message_id FROM later)
)
INSERT INTO outbound_events (message_id, event, detail)
SELECT message_id, 'relay_deferred', $4 FROM later
"""
# Each recipient's event, then the message's own (one, as before): a recipient
# refused at RCPT ($4, $5 as for RELAYED) with its reply, the others with the message's.
FAILED = """
WITH done AS (
    DELETE FROM outbox WHERE message_id = $1 AND attempts = $2
    RETURNING message_id
), message AS (
    UPDATE outbound_messages
    SET status = 'failed', attempts = $2, last_error = $3, updated_at = now()
    WHERE id IN (SELECT message_id FROM done)
), recipients AS (
    UPDATE outbound_recipients
    SET status = 'failed',
        detail = coalesce(($5::text[])[array_position($4::text[], address)], $3),
        updated_at = now()
    WHERE message_id IN (SELECT message_id FROM done) AND status = 'queued'
    RETURNING address, detail
)
INSERT INTO outbound_events (message_id, recipient, event, detail)
SELECT $1, address, 'failed', detail FROM recipients
UNION ALL
SELECT message_id, NULL, 'failed', $3 FROM done
"""

MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class RelayConfig:
    host: str
    port: int
    max_attempts: int
    backoff_seconds: float
    workers: int = 8


@dataclass(frozen=True, slots=True)
class Claimed:
    id: uuid.UUID
    envelope_from: str
    recipients: list[str]
    content: bytes
    attempts: int
    interrupted: bool = False  # an earlier attempt's outcome was never stored
    # Then, the log of the Postfix it went to (its maillog_positions key) and the
    # instance that made it (None: not known; migration 0025).
    attempt_log: str | None = None
    attempt_by: str | None = None


def backoff(config: RelayConfig, attempts: int) -> dt.timedelta:
    """Exponential in the attempts made, with +-25% jitter so retries do not align."""
    # Also the pause after unreachable claims in a row (relay.RelayWorker._pause): a
    # long outage makes them thousands.
    base = doubled(config.backoff_seconds, attempts, MAX_BACKOFF_SECONDS)
    return dt.timedelta(seconds=base * random.uniform(0.75, 1.25))  # noqa: S311 - jitter


@dataclass(frozen=True, slots=True)
class Relayed:
    """Postfix queued ``row``; ``found_in_log``: its answer was read from Postfix's log
    after an interrupted attempt; ``queue_host``: then, the host whose log it was (None:
    the storing relay's)."""

    row: Claimed
    result: SubmitResult
    found_in_log: bool = False
    queue_host: str | None = None


def found_answer(commit: Commit) -> SubmitResult:
    """Postfix's answer to an interrupted attempt, as read from its log."""
    return SubmitResult(Outcome.QUEUED, f"250 queued as {commit.queue_id} (read from the "
                        "mail log after an interrupted attempt)", commit.queue_id)


def untracked_detail(reply: str) -> str:
    """The ``relayed`` event's detail for a 250 that names no queue id (a before-queue
    content filter's own reply, ``smtpd_proxy_filter``): no line of Postfix's log can
    be tied to the message, which is ``untracked``, a final status."""
    return f"Postfix's reply names no queue id: {scrub_reply(reply)}"


def _refusals(result: SubmitResult) -> tuple[list[str], list[str]]:
    """The recipients refused one by one, and each one's reply fit to store."""
    return list(result.refused), [scrub_reply(reply) for reply in result.refused.values()]


async def store_relayed(conn: asyncpg.Connection, outcomes: list[Relayed],
                        queue_host: str | None = None) -> None:
    """Store these messages' outcomes in one round trip and one transaction (asyncpg's
    ``executemany``); ``queue_host``: the name of the host whose Postfix queued them, as
    its log follower knows it (None: unknown, lines of any host's log are about them),
    for those that do not name one.
    Their outbox rows are deleted in message_id order, the order in which the maillog
    follower locks them (migration 0017): two transactions that each
    want several never wait for each other in a cycle."""
    await conn.executemany(RELAYED, [
        (o.row.id, o.result.queue_id, o.row.attempts, *_refusals(o.result),
         o.result.queue_id or untracked_detail(o.result.reply), o.found_in_log,
         o.queue_host or queue_host)
        for o in sorted(outcomes, key=lambda o: o.row.id)
    ])
    for o in outcomes:
        if o.result.queue_id is None:
            log.warning("relayed message %s, untracked: Postfix's reply names no queue id "
                        "(%s)", o.row.id, for_log(o.result.reply))
            continue
        # DEBUG: the message's timeline keeps it; the attempt was logged at INFO.
        log.debug("relayed message %s as %s (%d refused)", o.row.id, o.result.queue_id,
                  len(o.result.refused))


def _stored(status: str) -> bool:
    """Whether a RETRY or FAILED wrote its events (``INSERT 0 n``, n > 0)."""
    return not status.endswith(" 0")


async def record(
    conn: asyncpg.Connection, config: RelayConfig, row: Claimed, result: SubmitResult,
    *, found_in_log: bool = False, queue_host: str | None = None,
) -> str | None:
    """Store the outcome; its name (relayed, deferred, failed), or None when another
    claim took the row meanwhile (a 4xx or 5xx is then left to it: RETRY).
    ``found_in_log``: the answer was read from Postfix's log after an interrupted
    attempt; ``queue_host`` as for :func:`store_relayed`."""
    if result.outcome is Outcome.QUEUED:
        await store_relayed(conn, [Relayed(row, result, found_in_log)], queue_host)
        return "relayed"
    reply = scrub_reply(result.reply)
    # A last attempt whose message went out unanswered is no failure yet: Postfix may
    # have queued it (and deliver it), and a client told "failed" would send it again.
    # It comes back once more for the log to decide, and is not sent again
    # (RelayWorker._relay).
    if result.outcome is Outcome.RETRY and (row.attempts < config.max_attempts
                                            or result.uncertain):
        # Still unsettled when Postfix may hold a copy: this attempt's, or the one
        # interrupted before, whose queue file qmgr may not have taken in yet.
        if not _stored(await conn.execute(RETRY, row.id, row.attempts,
                                          backoff(config, row.attempts), reply,
                                          result.uncertain or row.interrupted)):
            return None
        log.warning("relay deferred message %s (attempt %d): %s", row.id, row.attempts,
                    for_log(reply))
        return "deferred"
    if not _stored(await conn.execute(FAILED, row.id, row.attempts, reply,
                                      *_refusals(result))):
        return None
    log.warning("relay failed message %s after %d attempt(s): %s", row.id, row.attempts,
                for_log(reply))
    return "failed"

