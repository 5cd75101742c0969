"""Did Postfix queue a message whose relay attempt was cut off before its answer was stored?

The relay worker stores Postfix's 250 as soon as it arrives; a service that
dies in between (or loses the connection after sending the message) leaves
the outbox row unsettled, and sending it again would deliver the message
twice if Postfix had queued it. Postfix's log tells: cleanup names each
message's Message-ID under its queue id (ours embed the outbox row's id,
see :func:`.build.new_message_id`), and only qmgr's ``from=... (queue
active)`` says the queue file was committed (cleanup's hold and discard
lines come while the message is still arriving). The maillog follower hands
these lines to ``maillog_receipts`` (migration 0011), which keeps receipts
for messages still in the outbox. A queue id starts afresh at the first line
of every message (smtpd's or qmqpd's ``client=``, pickup's ``uid=``, any
Message-ID line) and at a reject: Postfix reuses short queue ids, and a
receipt of ours that was never committed must not be committed by another
message's line. A message a milter quarantines goes to the hold queue, which
qmgr never reads: cleanup's ``milter-hold: END-OF-MESSAGE`` line, the last of
its checks before it commits the file, is that message's commit (a hold by
``header_checks`` comes while the message still arrives, and commits nothing).
A later milter may still reject the message at its end, and cleanup logs the
hold first: a ``milter-reject: END-OF-MESSAGE`` line for the queue id that
follows its hold with no other line of it between undoes that commit
(:func:`apply_receipts`). The reader remembers such holds between polls
(:class:`Holds`); one taken over by another reader between the two lines is
not known to it, and a relay that asks between them (while the later milter
still decides) takes the hold for the commit.
Before sending an unsettled row again, the relay looks for a committed receipt
and stores its queue id instead.

An open receipt (cleanup named our Message-ID, and no commit, reject or reuse of
the queue id followed) is no "not queued": cleanup makes the queue file final
before smtpd's 250, and qmgr logs ``queue active`` only once it takes the file
from the incoming queue, which a busy qmgr (active queue full) does late; the log
shows nothing in between. A transfer cut off mid-DATA leaves cleanup's line too (its
file is removed without one), but smtpd's ``lost connection after DATA`` reads as a
reject (:mod:`.cutoffs`); one cut off where smtpd logs nothing of it (killed) looks
the same, so an open receipt holds the row back only until it is
:data:`OPEN_RECEIPT_LIMIT` old (:func:`opened`), unless Postfix's queue shows the
file finished (:class:`.interrupted.PostfixQueue`).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from .syslogline import LogLine

_RECEIVERS = ("smtpd", "qmqpd", "pickup")
_MESSAGE_ID = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): message-id=(?P<value>.*?)\s*")
_OURS = re.compile(r"<(?P<hex>[0-9a-f]{32})@[^<>\s]+>")
_REJECTED = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): (?P<milter>milter-)?reject: "
                       r"(?P<at_end>END-OF-MESSAGE from )?")
_HELD = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): milter-hold: END-OF-MESSAGE from ")
_ARRIVING = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): (?:client|uid)=")
_ACTIVE = re.compile(
    r"(?P<queue_id>[0-9A-Za-z]+): from=<.*>, size=\d+, nrcpt=\d+ \(queue active\)\s*"
)

APPLY = "SELECT maillog_receipts($1, $2, $3, $4)"
OPEN = "SELECT queue_id FROM relay_receipts WHERE host = $1 AND NOT committed"
VOID = "DELETE FROM relay_receipts WHERE host = $1 AND NOT committed"
# The commit a hold made, undone by a later milter's reject: the newest committed
# receipt of the queue id (an older one is another message's, the id reused). Its
# outbox row is locked first, as maillog_receipts locks them: a row the relay is
# deleting is waited for, then skipped.
UNDO_HOLD = """
WITH held AS (
    SELECT r.seq FROM relay_receipts r JOIN outbox o USING (message_id)
    WHERE r.host = $1 AND r.queue_id = $2 AND r.committed
    ORDER BY r.seq DESC LIMIT 1 FOR KEY SHARE OF o
)
DELETE FROM relay_receipts WHERE seq IN (SELECT seq FROM held)
"""
COMMITTED = """
SELECT queue_id, host FROM relay_receipts WHERE message_id = $1 AND committed
ORDER BY seq LIMIT 1
"""
# The newest receipt still open, and whether it was seen within $2.
OPENED = """
SELECT queue_id, host, seen_at > now() - $2::interval AS recent FROM relay_receipts
WHERE message_id = $1 AND NOT committed ORDER BY seq DESC LIMIT 1
"""
# Past it, qmgr is taken to have dropped, not delayed, a file cleanup opened: two of
# qmgr's default queue_run_delay periods, far past any lag of a qmgr still working.
OPEN_RECEIPT_LIMIT = dt.timedelta(minutes=10)
MAX_HOLDS = 10_000


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """A commit line, or a line that starts the queue id afresh (naming our outbox
    row when it is our Message-ID)."""

    queue_id: str
    message: uuid.UUID | None
    committed: bool
    # A Message-ID line of other mail: no id of ours could be in that shape.
    foreign: bool = False
    # A milter's verdict at the end of the message: a hold (committed), or a reject
    # that undoes the hold of an earlier milter. Not compared: it refines ``committed``.
    at_end: bool = field(default=False, compare=False)
    # A message's first line (client=, uid=), its Message-ID line still to come.
    first: bool = field(default=False, compare=False)


def parse_receipt(line: LogLine) -> ReceiptLine | None:
    text, start, daemon = line.text, line.start, line.daemon
    if daemon == "cleanup":
        if (found := _MESSAGE_ID.fullmatch(text, start)) is not None:
            ours = _OURS.fullmatch(found["value"])
            if ours is None:
                return ReceiptLine(found["queue_id"], None, committed=False, foreign=True)
            return ReceiptLine(found["queue_id"], uuid.UUID(ours["hex"]), committed=False)
        if (rejected := _REJECTED.match(text, start)) is not None:
            return ReceiptLine(rejected["queue_id"], None, committed=False,
                               at_end=bool(rejected["milter"] and rejected["at_end"]))
        if (held := _HELD.match(text, start)) is not None:
            return ReceiptLine(held["queue_id"], None, committed=True, at_end=True)
    elif daemon == "qmgr":
        if (active := _ACTIVE.fullmatch(text, start)) is not None:
            return ReceiptLine(active["queue_id"], None, committed=True)
    elif daemon in _RECEIVERS and (arriving := _ARRIVING.match(text, start)):
        return ReceiptLine(arriving["queue_id"], None, committed=False, first=True)
    return None


class Holds:
    """Queue ids whose last receipt line was a milter's hold at the end of the message,
    as a reader saw them (the newest ``limit``: most are never named again)."""

    def __init__(self, ids: Iterable[str] = (), limit: int = MAX_HOLDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict.fromkeys(ids)
        self._limit = limit

    def undone(self, lines: list[ReceiptLine]) -> tuple[list[int], Holds]:
        """The indexes of the lines that undo a hold, and the holds after ``lines``
        (self is left as it was: a poll that fails reads the same lines again)."""
        if not any(line.at_end or line.queue_id in self._ids for line in lines):
            return [], self  # the common case: no copy
        ids = OrderedDict(self._ids)
        undone: list[int] = []
        for index, line in enumerate(lines):
            was_held = line.queue_id in ids
            ids.pop(line.queue_id, None)  # any other line of it ends the hold's turn
            if line.at_end and line.committed:
                ids[line.queue_id] = None
            elif line.at_end and was_held:
                undone.append(index)
        while len(ids) > self._limit:
            ids.popitem(last=False)
        return undone, Holds(ids, self._limit)


async def apply_receipts(conn: asyncpg.Connection, host: str, lines: list[ReceiptLine],
                         holds: Holds | None = None) -> Holds:
    """Apply the lines of ``host``'s Postfix log, in their order, after ``holds`` (those
    of the lines before them); the holds after them.

    Only lines that can change a receipt go to the database: those naming a message
    of ours, and those about a queue id with an uncommitted receipt, already stored
    or started by such a line (a line only ever starts afresh or commits an
    uncommitted receipt). On a busy server nearly every line is other mail's; sending
    them all cost a statement each, and on catching up about 20 ms of the event loop
    per 4 MiB read. Only this host's reader, under its lease, adds receipts, so the
    set read here holds every one a line could touch.
    """
    undone, after = (holds or Holds()).undone(lines)
    start = 0
    for index in undone:  # each in its place: a later line may name the queue id afresh
        await _apply(conn, host, lines[start:index + 1])
        await conn.execute(UNDO_HOLD, host, lines[index].queue_id)
        start = index + 1
    await _apply(conn, host, lines[start:])
    return after


async def _apply(conn: asyncpg.Connection, host: str, lines: list[ReceiptLine]) -> None:
    if not lines:
        return
    relevant = {r.queue_id for r in lines if r.message is not None}
    relevant.update(row["queue_id"] for row in await conn.fetch(OPEN, host))
    kept = [r for r in lines if r.queue_id in relevant]
    if kept:
        await conn.execute(APPLY, host, [r.queue_id for r in kept],
                           [r.message for r in kept], [r.committed for r in kept])


async def void_uncommitted(conn: asyncpg.Connection, host: str) -> None:
    """Forget ``host``'s receipts not yet committed (lines that would decide them were lost)."""
    await conn.execute(VOID, host)


@dataclass(frozen=True, slots=True)
class Commit:
    """Where Postfix committed a message: its queue id in the Postfix of ``host``, whose
    log showed it (another host's, when a row cut off there was claimed here next)."""

    queue_id: str
    host: str


async def committed(conn: asyncpg.Connection, message: uuid.UUID) -> Commit | None:
    """Where Postfix committed ``message``, as a log showed."""
    row = await conn.fetchrow(COMMITTED, message)
    return None if row is None else Commit(row["queue_id"], row["host"])


@dataclass(frozen=True, slots=True)
class Opened:
    """A receipt still open: cleanup named the message under ``at``, and nothing has
    committed or voided that since; ``recent``: less than :data:`OPEN_RECEIPT_LIMIT`
    ago, so Postfix may still be taking it in."""

    at: Commit
    recent: bool


async def opened(conn: asyncpg.Connection, message: uuid.UUID) -> Opened | None:
    """The newest receipt of ``message`` still open."""
    row = await conn.fetchrow(OPENED, message, OPEN_RECEIPT_LIMIT)
    return None if row is None else Opened(Commit(row["queue_id"], row["host"]), row["recent"])
