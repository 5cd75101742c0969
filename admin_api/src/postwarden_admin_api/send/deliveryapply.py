"""Applying delivery lines to the messages of ours they are about.

Postfix reuses short queue ids, so a line is applied only to the message relayed
last under its queue id through this host's Postfix, only once the relay stored
that queue id and the reader read past the message's arrival under it (catching up,
lines before it are an earlier message's, the one given the id before, whose arrival
the reader read: migrations 0055, 0056; those read after a message's arrival and before
the next one's, in one read, are that message's: 0058), and never once Postfix
removed that message's queue file (the id may name other mail since: migration
0050; a removal read while a recipient still waits, a forged line perhaps, a day
after the last line about the message), nor,
under a short queue id, once Postfix can no longer hold the message (101 days after
the relay: migration 0053); in one query a poll asks which of its lines' queue ids
are ours, and applies those lines, in log order, in one statement (``maillog_apply``,
migrations 0009, 0013, 0015, 0018, 0050, 0053, 0055, 0056 and 0058).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from .deliverylines import DeliveryEvent, Requeued
from .receipts import ReceiptLine
from .scrub import for_log

log = logging.getLogger(__name__)

# Migration 0018: every line of a poll in one statement, applied in log order, each to
# the message relayed last under its queue id through this host's Postfix; 0033: with
# the time each line was logged; 0050: none to a message whose queue file was removed;
# 0053: none past a short queue id's window; 0056 ($9): lines read before an arrival under
# their queue id, to none whose arrival is still ahead; 0058 ($10): lines known to be a
# message's, to it alone.
APPLY = "SELECT maillog_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) AS line"
# Stored by the relay (recorded: through this host's Postfix, or a host not named), or
# so far named only by a receipt in this host's log, or stored for a message whose
# arrival under it the reader has yet to read (migration 0055).
OURS = """
SELECT queue_id, queue_arrival_mark IS NULL AS recorded FROM outbound_messages
WHERE queue_id = ANY($1::text[]) AND (queue_host = $2 OR queue_host IS NULL)
UNION
SELECT queue_id, false FROM relay_receipts WHERE host = $2 AND queue_id = ANY($1::text[])
"""
# Migration 0055: the reader read these messages' arrival (our Message-ID) under these
# queue ids; or read the log to its end in a poll whose maillog_reads number came after
# the mark (the arrival, logged before Postfix answered the relay, is read or lost).
ARRIVED = """
UPDATE outbound_messages m SET queue_arrival_mark = NULL
FROM unnest($2::uuid[], $3::text[]) AS arrival (id, queue_id)
WHERE m.id = arrival.id AND m.queue_id = arrival.queue_id AND m.queue_arrival_mark IS NOT NULL
  AND (m.queue_host = $1 OR m.queue_host IS NULL)
"""
CAUGHT_UP = """
UPDATE outbound_messages SET queue_arrival_mark = NULL
WHERE queue_arrival_mark < $2 AND (queue_host = $1 OR queue_host IS NULL)
"""


# An administrator requeued a message (postsuper -r): the one relayed last under the old
# queue id through this host's Postfix, as maillog_apply picks it, takes the new one. Only
# one still waiting for results, whose queue file Postfix has not removed (migration 0050;
# a removal read while a recipient waits holds for a day, 0053: a forged line perhaps):
# an older message's id, reused by other mail requeued, stays. Nor one whose arrival
# under the old id the reader has yet to read (migration 0055): a line read before it,
# catching up, is about an earlier message (one read while that arrival may still be
# ahead waits: apply_requeues). $4: the message it is known to be (apply_known), or NULL.
# The new queue file's removal is yet to come.
REQUEUE = """
UPDATE outbound_messages
SET queue_id = $3, queue_removed_at = NULL, queue_open_until = NULL, updated_at = now()
WHERE id = (SELECT m.id FROM outbound_messages m
            WHERE m.queue_id = $2 AND (m.queue_host = $1 OR m.queue_host IS NULL)
              AND m.status = 'relayed'
              AND (m.queue_removed_at IS NULL OR m.queue_open_until >= now())
              AND m.queue_arrival_mark IS NULL AND ($4::uuid IS NULL OR m.id = $4)
            ORDER BY (SELECT max(e.id) FROM outbound_events e
                      WHERE e.message_id = m.id AND e.event = 'relayed') DESC NULLS LAST
            LIMIT 1)
"""


def _moment(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


async def our_queue_ids(conn: asyncpg.Connection, host: str, queue_ids: set[str]
                        ) -> tuple[set[str], set[str]]:
    """Among ``queue_ids``, in one query: those naming a message of ours as the relay
    stored it (relayed through ``host``'s Postfix, or a host it did not name), and those
    a receipt in ``host``'s log names (the relay has yet to store them) or the relay
    stored for a message whose arrival the reader has yet to read."""
    if not queue_ids:
        return set(), set()
    rows = await conn.fetch(OURS, list(queue_ids), host)
    return ({row["queue_id"] for row in rows if row["recorded"]},
            {row["queue_id"] for row in rows if not row["recorded"]})


@dataclass(frozen=True, slots=True)
class Applied:
    """What became of a poll's delivery lines, by their indexes."""

    recorded: set[int]  # about a message of ours, and recorded
    refused: set[int]  # about a message of ours, holding a value the database refuses
    awaited: set[str]  # queue ids a receipt in the log names, the relay yet to store them


# A value the database (or asyncpg, encoding it) refuses: refused again at every poll.
_REFUSED = (asyncpg.DataError, ValueError, OverflowError)
Line = tuple[int, DeliveryEvent]  # a delivery line of the poll, by its index
# A line read after the arrival of a message of ours under its queue id, before the next
# arrival under it: that message's.
Known = tuple[uuid.UUID, DeliveryEvent]


async def apply_events(conn: asyncpg.Connection, host: str, events: list[DeliveryEvent]
                       ) -> Applied:
    """Record the events about messages of ours, in ``conn``'s transaction.

    All of them in one statement. Should the database refuse a value (as it did a NUL
    in an address, before the follower ended lines at NULs), the statement would fail
    at every poll and delivery tracking would stop for all mail: then each line is
    applied alone, and those refused are left out (logged, and counted by the caller)."""
    recorded, awaited = await our_queue_ids(conn, host, {event.queue_id for event in events})
    # A queue id awaited for a message in the outbox is that message's now, even where an
    # older message was stored under it (Postfix reuses short ids): its lines wait for it.
    # So do those of one stored for a message whose arrival is still ahead in the log (a
    # catch-up): read before it, they are an earlier message's, given to it once the
    # arrival is read (apply_earlier).
    mine = [(index, event) for index, event in enumerate(events)
            if event.queue_id in recorded and event.queue_id not in awaited]
    return await _record(conn, host, mine, awaited, earlier=False)


async def apply_earlier(conn: asyncpg.Connection, host: str, events: list[DeliveryEvent]
                        ) -> Applied:
    """Record ``events``, read before a message arrived under their queue id (Postfix
    reused it), in ``conn``'s transaction: each is about the message given the id before,
    never held for the one arriving: maillog_apply leaves out those whose arrival under
    the id the reader has yet to read (migration 0056). Before :func:`note_arrivals` notes
    the arrival."""
    if not events:  # the common case: not asked about
        return Applied(set(), set(), set())
    recorded, _ = await our_queue_ids(conn, host, {event.queue_id for event in events})
    mine = [(index, event) for index, event in enumerate(events) if event.queue_id in recorded]
    return await _record(conn, host, mine, set(), earlier=True)


async def apply_known(conn: asyncpg.Connection, host: str, lines: list[Known]) -> Applied:
    """Record each of ``lines`` for the message it is known to be about, if the relay
    stored it under the line's queue id, in ``conn``'s transaction: read in one read
    between that message's arrival and the next under the id (Postfix reused it), they are
    neither the earlier message's nor the next one's. After :func:`note_arrivals`."""
    if not lines:
        return Applied(set(), set(), set())
    messages = {index: message for index, (message, _) in enumerate(lines)}
    return await _record(conn, host, [(index, event) for index, (_, event) in enumerate(lines)],
                         set(), earlier=False, messages=messages)


async def _record(conn: asyncpg.Connection, host: str, mine: list[Line], awaited: set[str],
                  *, earlier: bool, messages: dict[int, uuid.UUID] | None = None) -> Applied:
    """Apply ``mine`` (lines about messages of ours), hand-overs first, as
    :func:`apply_events` says (``earlier``: as :func:`apply_earlier`; ``messages``: the
    message some are known to be about, by index, as :func:`apply_known`)."""
    messages = messages or {}
    handed = await _hand_over(conn, host, mine, messages)
    mine = [(index, event) for index, event in mine if index not in handed]
    if not mine:
        return Applied(handed, set(), awaited)
    try:
        async with conn.transaction():  # a savepoint: a refusal undoes these lines only
            applied = await _apply(conn, host, mine, earlier, messages)
        refused: list[Line] = []
    except _REFUSED:
        applied, refused = await _apply_each(conn, host, mine, earlier, messages)
    # DEBUG: the message's timeline keeps it (GET /api/v1/messages/{id}). Masked for the
    # log (some microseconds a line) only when it is logged.
    if log.isEnabledFor(logging.DEBUG):
        for _, event in applied:
            about = for_log(event.recipient) if event.recipient is not None else "the message"
            log.debug("%s: %s %s (%s)", event.queue_id, event.status, about,
                      for_log(event.reply))
    return Applied(handed | {index for index, _ in applied},
                   {index for index, _ in refused}, awaited)


async def _hand_over(conn: asyncpg.Connection, host: str, lines: list[Line],
                     messages: dict[int, uuid.UUID]) -> set[int]:
    """The hand-overs to a content filter among ``lines`` (.handovers), each message
    given its new queue id first, as a requeue: the old id's later lines (qmgr's
    ``removed``) are then no longer its, and the new one's are from the next poll on
    (a line about it in this poll was found not ours). One move per message: each
    recipient's line names the same new id."""
    handed = [(index, event) for index, event in lines if event.handed_to is not None]
    moves = dict.fromkeys((event.queue_id, event.handed_to, messages.get(index))
                          for index, event in handed)
    if moves:
        await conn.executemany(REQUEUE, [(host, *move) for move in moves])
    return {index for index, _ in handed}


async def _apply(conn: asyncpg.Connection, host: str, lines: list[Line], earlier: bool,
                 messages: dict[int, uuid.UUID]) -> list[Line]:
    """``lines`` applied in one statement, in log order: those that matched."""
    rows = await conn.fetch(
        APPLY, host, [e.queue_id for _, e in lines], [e.recipient for _, e in lines],
        [e.status for _, e in lines], [e.reply or None for _, e in lines],
        [e.hard_bounce for _, e in lines], [e.rewritten for _, e in lines],
        [_moment(e.logged_at) for _, e in lines], earlier,
        [messages.get(index) for index, _ in lines] if messages else None,
    )
    return [lines[row["line"] - 1] for row in rows]


async def _apply_each(conn: asyncpg.Connection, host: str, lines: list[Line], earlier: bool,
                      messages: dict[int, uuid.UUID]) -> tuple[list[Line], list[Line]]:
    """``lines`` applied one by one, in log order: those that matched, and those the
    database refused."""
    applied: list[Line] = []
    refused: list[Line] = []
    for line in lines:
        try:
            async with conn.transaction():
                applied += await _apply(conn, host, [line], earlier, messages)
        except _REFUSED as exc:
            refused.append(line)
            _, event = line
            # Not its address: one the database refuses is none a mask can be sure of.
            log.error("maillog follower: %s: a %s line the database refuses (%s) is left "
                      "out", event.queue_id, event.status, type(exc).__name__)
    return applied, refused


async def note_arrivals(conn: asyncpg.Connection, host: str, receipts: list[ReceiptLine],
                        caught_up: int | None) -> None:
    """The reader is past the arrival of the messages our Message-ID lines among
    ``receipts`` name, under their queue ids; and, ``caught_up`` (a poll's maillog_reads
    number, when it read the log to its end), past that of every message stored before
    it was drawn. Before the poll's delivery lines: those after an arrival are its."""
    ours = [receipt for receipt in receipts if receipt.message is not None]
    if ours:
        await conn.execute(ARRIVED, host, [r.message for r in ours], [r.queue_id for r in ours])
    if caught_up is not None:
        await conn.execute(CAUGHT_UP, host, caught_up)


async def apply_requeues(conn: asyncpg.Connection, host: str, requeues: list[Requeued]
                         ) -> list[Requeued]:
    """Give each requeued message of ours its new queue id, in log order, after the
    poll's lines (those of the old id before it are applied under it; those of the new
    one at the next poll). A requeue of a queue id awaited (a receipt names it, or the
    message stored under it has its arrival still ahead: a catch-up) waits, as that id's
    lines do: those are returned, for the next poll."""
    if not requeues:
        return []
    _, awaited = await our_queue_ids(conn, host, {r.queue_id for r in requeues})
    await move_requeued(conn, host, [r for r in requeues if r.queue_id not in awaited])
    return [r for r in requeues if r.queue_id in awaited]


async def move_requeued(conn: asyncpg.Connection, host: str, requeues: list[Requeued],
                        messages: Sequence[uuid.UUID | None] = ()) -> None:
    """Give each requeued message of ours its new queue id, in log order: called before
    :func:`note_arrivals` with requeues read before a message arrived under their old
    id, it moves the earlier message, as :func:`apply_earlier` applies lines; after it,
    with the ``messages`` they are known to be (as :func:`apply_known`), those alone."""
    if requeues:
        known = messages or [None] * len(requeues)
        await conn.executemany(REQUEUE, [(host, r.queue_id, r.new_queue_id, message)
                                         for r, message in zip(requeues, known, strict=True)])
