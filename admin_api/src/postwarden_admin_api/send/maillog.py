"""Delivery tracking: follow Postfix's ``maillog_file`` and map queue ids to recipients.

Lines such as ``QID: to=<a@b>, relay=..., dsn=5.1.1, status=bounced (host ...
said: 550 5.1.1 ...)`` update that recipient of the message this host's Postfix
queued as QID (the one relayed last, until its queue file is removed, and once
the reader is past its arrival in the log: Postfix reuses short queue ids) to
``delivered``, ``deferred`` or ``bounced`` with the (redacted) remote reply; a
bounce saying the address itself is bad (5.1.x, 5.2.1: see
:attr:`.DeliveryEvent.hard_bounce`) adds it to the suppression list. Lines
about the whole message (expired, discarded, removed: see
:mod:`.deliverylines`) settle the recipients no line of their own will (held
and released are noted only); one with a status this version does not know is
counted and warned of. A message requeued by an administrator (``postsuper -r``)
takes the queue id pickup gives it (a requeue read while its old id's lines wait
waits with them, saved with the position: migration 0057), and one an after-queue
content filter queues
again the new one (:mod:`.handovers`). A rotated file is read to its end, then any
rotated after it (rotated again before it was read), and the new one from its start,
and one emptied
in place too (:mod:`.logtail`), also when the rotation happened while no
instance read the log (the old file is found by its inode beside the log, or,
for one emptied in place, the copy by the bytes before the saved position, whose
fingerprint is saved with it, migration 0024; unless it was compressed: then the
files rotated after it, if any is not). A line
can arrive before the relay worker stored the queue id it names, so unmatched
lines are retried for a while (:mod:`.waitinglines`), until a message arrives under
their queue id (its first line, :mod:`.receipts`): they were another's, the message
given the id before, and are applied to it if it is ours (:func:`.apply_earlier`); those
read after a message's arrival and before the next one's under the id, in one read, are
that message's, applied to it if it is ours (:func:`.apply_known`, migration 0058), and so
are those between its first line and its Message-ID line (a header_checks HOLD, an access
table's HOLD at RCPT), in one read or across reads. Most
lines in a busy log are about other mail: those of mail seen arriving as
another's are dropped as they are parsed (:mod:`.othermail`); of the rest, each
poll first asks, in one query, which queue ids are ours, then applies those
lines, in log order, in one statement (:mod:`.deliveryapply`); the rest wait.
Waiting lines whose queue id a receipt of ours names (the relay has yet to store
Postfix's answer, even where an older message was stored under that queue id)
are saved with the read position, so the next reader goes on with them
(migration 0014). A poll whose database
work fails keeps all its lines for the next one. Lines about queue files
(:mod:`.receipts`, and smtpd's of transfers cut off: :mod:`.cutoffs`) are handed
over in the same poll, all of them;
:meth:`MaillogFollower.read_past` waits for a poll that started after a given
moment to read to the end of the log, with no newer file waiting at the path
(on a standby instance: for such a poll of the reader's, told by the
``maillog_reads`` number it drew).

The read position is kept in ``maillog_positions`` per host, so a restart
goes on where it stopped. Instances on one host share that row: only the
one holding its lease (renewed with the position at every poll, in the
poll's transaction) reads the log; the others stand by and take over from
the saved position once it is released (at a stop) or has lapsed
(:data:`LEASE_SECONDS`). An instance that finds the row other than it left
it (a token is saved with the position: it stalled past its lease and another
read on, or a commit whose answer it lost went through) drops what it holds
and goes on from the row. At a stop the
service stops the relay first and the reader reads once more, so lines
waiting for a queue id the relay stored last are applied; the save of that
poll says whether it read to the end (``read_to_stop``, migration 0025): then
the log as read shows every attempt that instance's relay made
(:mod:`.interrupted`). Instances are told apart by host name, or by the
``maillog_host`` setting where containers get a new host name at each start:
instances following one log share the name. The services of two Postfix instances
logging to one file (``maillog_syslog_name`` apart) each keep a row of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import asyncpg

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import DB_ERRORS, pooled, surviving

from .cutoffs import CutOffs
from .deliveryapply import (
    Applied,
    Known,
    apply_earlier,
    apply_events,
    apply_known,
    apply_requeues,
    move_requeued,
    note_arrivals,
)
from .deliverylines import DeliveryEvent, Requeued, UnknownStatus, parse_line
from .handovers import Arrivals
from .logtail import LogTail, fingerprint, renamed_file
from .noqueuestops import NoQueueStops
from .othermail import OtherMail
from .receipts import Holds, ReceiptLine, apply_receipts, void_uncommitted
from .syslogline import LogLine, logged_at, split_line
from .waitinglines import MAX_PENDING, Waiting, restored, saved_form, still_waiting

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MAX_PENDING_RECEIPTS = 200_000  # about 20 MB of lines kept while Postgres is away
MAX_READ = 4 * 1024 * 1024
# No line of Postfix's comes near it: a longer one (no newline in a run of bytes) is
# skipped to its end rather than held, and copied, whole.
MAX_LINE = 1024 * 1024
# A crash leaves a file's tail NUL-filled, and the next line is written after them: a
# run of NULs ends a line as a newline does (Postfix and syslog write no NUL in one).
_NULS = re.compile(rb"[\n\0]+")
# A log none of whose first lines is a Postfix daemon's, in a form the follower reads
# (syslogline: not journalctl's JSON, say), tracks nothing: said once.
FORM_CHECK_LINES = 1000
# Unknown statuses warned of, each once: distinct words in lines others wrote to the log
# (it should be Postfix's alone) cannot flood the service's log. All are counted.
MAX_UNKNOWN_NAMED = 20

# Keyed by host and path: service instances on several hosts each follow their own
# Postfix's log, often at the same path; and by the Postfix instance whose lines they
# read, where several log to one file. Instances on one host share a row: the lease
# says which one reads (migration 0012). $1: this row's key first, then those of
# earlier versions to go on from (keyed by host and path alone, or by path alone).
SELECT_POSITION = """
SELECT path, inode, position, leader, saved_by, mark_fingerprint, read_to_end, pending, requeues,
       noqueue_stops, updated_at,
       coalesce(leader <> $2 AND lease_until > now() AND path = ($1::text[])[1], false) AS taken
FROM maillog_positions WHERE path = ANY($1::text[])
ORDER BY array_position($1::text[], path) LIMIT 1
"""
# The lease counts from the save, not from the start of a poll that may be slow.
# $8, the waiting lines to save: NULL when they are as saved last. $9: the fingerprint
# of the bytes before the position (migration 0024). $10: a stopping reader's final
# poll read the log to its end (migration 0025). $11: the requeues waiting (migration 0057).
# $12: the smtpd stops not yet tied to their message, or not committed (migration 0059).
SAVE_POSITION = """
INSERT INTO maillog_positions
    (path, inode, position, leader, lease_until, saved_by, read_to_end, pending,
     mark_fingerprint, read_to_stop, requeues, noqueue_stops)
VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5), $6, $7,
        coalesce($8::jsonb, '[]'), $9, $10, $11, $12)
ON CONFLICT (path) DO UPDATE SET inode = $2, position = $3, leader = $4,
    lease_until = EXCLUDED.lease_until, saved_by = $6, mark_fingerprint = $9,
    read_to_stop = $10, requeues = $11, noqueue_stops = $12, updated_at = now(),
    read_to_end = coalesce($7, maillog_positions.read_to_end),
    pending = coalesce($8::jsonb, maillog_positions.pending)
"""
# An earlier version's row, which the services of each Postfix instance logging to the
# file take over: the lines it left waiting go to the first of them only (each would
# apply them). Locked: the others' takeovers wait, then find none left.
CLAIM_PENDING = """
UPDATE maillog_positions SET pending = '[]'
FROM (SELECT path, pending FROM maillog_positions WHERE path = $1 FOR UPDATE) AS old
WHERE maillog_positions.path = old.path
RETURNING old.pending
"""
NEXT_READ = "SELECT nextval('maillog_reads')"
RELEASE = "UPDATE maillog_positions SET lease_until = NULL WHERE path = $1 AND leader = $2"
# One poll of a log at a time, whichever instance: the others stand by this round.
TRY_POLL = "SELECT pg_try_advisory_xact_lock(hashtextextended('postwarden maillog ' || $1, 0))"
LEASE_SECONDS = 15.0  # a reader that has not polled for this long is replaced
LAST_POLL_SECONDS = 5.0


def _lines(data: bytes) -> list[bytes]:
    """``data`` cut into lines, the last one perhaps not whole (the fast way, without
    NULs)."""
    return _NULS.split(data) if b"\0" in data else data.split(b"\n")


@dataclass(frozen=True, slots=True)
class _Read:
    """One poll's read of the log, parsed."""

    deliveries: list[Waiting]
    # Read before the first line of a message arriving under their queue id: the earlier
    # message's.
    earlier: list[Waiting]
    # Read between two such lines, of mail come and gone within the read: the message the
    # first one named as ours (or after a first line, the next: _named_by); those of
    # other mail are dropped.
    between: list[Known]
    receipts: list[ReceiptLine]
    requeues: list[Requeued]
    earlier_requeues: list[Requeued]  # as ``earlier``
    between_requeues: list[tuple[uuid.UUID, Requeued]]  # as ``between``
    unread: int  # bytes left in the file (or a newer one at the path) at this read
    # Queue ids a line started afresh (a message arriving under it): no line read before
    # is about that message, but for those read after its first line in an earlier read
    # when a Message-ID of ours is the first line here to start it (the message it names).
    restarted: set[str]
    named: dict[str, uuid.UUID]
    # Where the line not read whole starts (the position to save), and the bytes before it.
    line_start: int
    mark: bytes
    stops: dict[str, list[list[str]]] | None  # smtpd's stops there (NoQueueStops.saved)


@dataclass(frozen=True, slots=True)
class _Applied:
    """One poll's work in its transaction, to take up once it is committed."""

    unread: int  # bytes left unread
    applied: list[DeliveryEvent]
    refused: int  # lines left out: the database refused a value of theirs
    pending: tuple[list[Waiting], list[Waiting]]  # lines left waiting, and those saved
    requeues: list[Requeued]  # left waiting (saved)
    saved: uuid.UUID  # the token saved with the position


class MaillogFollower:
    def __init__(self, pool: asyncpg.Pool, path: Path, metrics: Metrics | None = None,
                 host: str | None = None, syslog_name: str | None = None) -> None:
        """``host``: the name this host's log is known by (``maillog_host``);
        ``syslog_name``: the relay's Postfix instance's, whose lines alone are read
        (``maillog_syslog_name``; None: any Postfix's)."""
        self._pool = pool
        self._path = path
        self._syslog_name = syslog_name
        self._host = host or socket.gethostname()
        # Its row in maillog_positions, and rows of earlier versions to go on from. The
        # services of two Postfix instances logging to one file each read their lines.
        self._key = f"{self._host}:{path}" + (f"#{syslog_name}" if syslog_name else "")
        self._keys = list(dict.fromkeys((self._key, f"{self._host}:{path}", str(path))))
        self._me = f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # as lease holder
        self._metrics = metrics or Metrics()
        self._tail = LogTail(path)
        self._leading = False
        self._committed: uuid.UUID | None = None  # the row's saved_by as this instance left it
        self._partial = b""
        self._skipped = 0  # bytes so far of an over-long line being skipped (not held)
        self._pending: list[Waiting] = []
        self._pending_saved: list[Waiting] = []  # those of them in the row, as last saved
        self._earlier: list[Waiting] = []  # read before an arrival, not yet committed
        self._between: list[Known] = []  # read between two arrivals, not yet committed
        self._receipts: list[ReceiptLine] = []
        # Read, not yet committed, or waiting for their queue id (as lines do).
        self._requeues: list[Requeued] = []
        self._earlier_requeues: list[Requeued] = []  # read before an arrival, not yet committed
        self._between_requeues: list[tuple[uuid.UUID, Requeued]] = []  # as _between
        self._other_mail = OtherMail()  # only poll()'s reading thread and _forget() use it
        self._arrivals = Arrivals()  # as _other_mail
        self._cut_offs = CutOffs()  # as _other_mail
        # Queue ids whose last line read to start them was a message's first line (its
        # Message-ID line not read yet); as _other_mail.
        self._first_read: OrderedDict[str, None] = OrderedDict()
        self._no_queue_stops = NoQueueStops()  # as _other_mail
        self._unknown_named: set[str] = set()  # statuses warned of; only the reading thread
        self._unshaped = 0  # lines read, none a Postfix daemon's; -1 once one was (or told)
        self._receipts_dropped = False
        self._holds = Holds()  # as of the last committed poll
        self._holds_read = self._holds  # as of the poll in its transaction
        self._read_to_end_at = -math.inf  # when the last poll that read to the end began
        # Bytes read since the last commit: a poll that failed after reading keeps their
        # lines in memory, to apply once the database takes them; they are still behind.
        self._uncommitted = 0
        self._progress = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._settle = 0.0  # before the last read, set by stop()

    @property
    def host(self) -> str:
        """The name this host's log is known by, for the relay to store with each queue id
        (``queue_host``, migration 0018)."""
        return self._host

    @property
    def key(self) -> str:
        """This host's log's row in ``maillog_positions``."""
        return self._key

    @property
    def instance(self) -> str:
        """This instance, as the row names its reader (``leader``)."""
        return self._me

    @property
    def leading(self) -> bool:
        """Whether this instance reads the log (holds its lease)."""
        return self._leading

    async def run(self) -> None:
        """Poll until :meth:`stop`, then read once more and hand the log over."""
        try:
            while not self._stopping.is_set():
                with surviving("maillog follower"):
                    await self.poll()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await self._stopping.wait()
            # Lines waiting for a queue id the relay stored as it stopped: applied now,
            # where the next reader would not see them. Read to the end, this poll also
            # tells other hosts' relays that the log shows every attempt this
            # instance's relay made (.interrupted): after a moment when the relay cut
            # one off, whose lines Postfix may still be writing.
            await asyncio.sleep(self._settle)
            with surviving("maillog follower"):
                async with asyncio.timeout(LAST_POLL_SECONDS):
                    await self.poll(final=True)
        finally:
            self._tail.close()
            with surviving("maillog follower"):
                await self.release()

    def stop(self, settle: float = 0.0) -> None:
        """End :meth:`run` (stop the relay first: its last queue ids are read then), its
        last read ``settle`` seconds from now."""
        self._settle = settle
        self._stopping.set()

    async def release(self) -> None:
        """Hand the log over at a stop: a standby instance takes it at its next poll."""
        if self._leading:
            self._set_leading(False)
            await self._pool.execute(RELEASE, self._key, self._me)

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        self._metrics.maillog_reading.set(int(leading))
        if not leading:
            self._metrics.maillog_unread.set(0)

    def _stand_by(self) -> None:
        if self._leading:
            log.warning("maillog follower: another instance reads %s now", self._path)
        self._forget()

    def _forget(self) -> None:
        """Drop what this instance read: the next reader goes on from the saved position."""
        self._set_leading(False)
        self._committed = None
        self._tail.close()
        self._partial, self._pending, self._pending_saved, self._receipts = b"", [], [], []
        self._requeues, self._earlier, self._earlier_requeues = [], [], []
        self._between, self._between_requeues = [], []
        self._skipped = self._uncommitted = 0
        self._receipts_dropped = False
        self._holds = self._holds_read = Holds()
        self._other_mail.clear()
        self._arrivals.clear()
        self._forget_sessions()

    def _forget_sessions(self) -> None:
        """Drop what the lines read say of messages still arriving: lines read by
        another instance, or lost, may have ended them."""
        self._cut_offs.clear()
        self._no_queue_stops.clear()
        self._first_read.clear()

    async def _take_over(self, conn: asyncpg.Connection, row: asyncpg.Record | None) -> None:
        """Go on where the last reader (this instance before a restart, or another) stopped."""
        self._forget()
        self._set_leading(True)
        self._tail = LogTail(self._path)
        log.info("maillog follower: reading %s", self._path)
        try:
            stat: os.stat_result | None = self._path.stat()
        except FileNotFoundError:
            stat = None
        if row is None:  # first start: earlier lines are not about our messages
            if stat is not None:
                self._tail.resume(stat.st_ino, stat.st_size)
            return
        self._pending = await self._waiting(conn, row)
        # As the row this instance saves to holds them: none yet, taken from an earlier
        # version's row (then they are saved in this one at the poll).
        self._pending_saved = self._pending if row["path"] == self._key else []
        self._requeues = [Requeued(old, new) for old, new in row["requeues"] or ()]
        if row["path"] == self._key:  # an earlier version's row holds none
            self._no_queue_stops.restore(row["noqueue_stops"])
        if stat is not None and row["inode"] == stat.st_ino:
            if not await asyncio.to_thread(self._tail.resume_in_place, stat.st_ino,
                                           row["position"], row["mark_fingerprint"]):
                log.warning("maillog follower: %s was emptied in place while no instance "
                            "read it and its copy is not beside it (compressed?): its last "
                            "lines were not read", self._path)
            return
        # Rotated since (perhaps the new file is not there yet): the old one first.
        renamed = await asyncio.to_thread(renamed_file, self._path, row["inode"])
        if renamed is not None and self._tail.resume_renamed(
                renamed, row["inode"], row["position"]):
            return
        self._tail.resume(row["inode"], row["position"])  # a new file is read from its start
        if row["inode"] != 0:  # 0: saved while there was no log yet
            log.warning("maillog follower: %s was rotated while no instance read it and the "
                        "old file is gone from its directory (compressed?): its last lines "
                        "were not read", self._path)
            # Rotated again since (delaycompress): the files rotated after it come first.
            await asyncio.to_thread(self._tail.resume_rotated_after,
                                    row["updated_at"].timestamp())

    async def _waiting(self, conn: asyncpg.Connection, row: asyncpg.Record) -> list[Waiting]:
        """The lines the last reader left waiting, in ``conn``'s transaction."""
        if row["path"] == self._key:
            return restored(row["pending"])
        return restored(await conn.fetchval(CLAIM_PENDING, row["path"]) or [])

    async def read_past(self, moment: float) -> None:
        """Return once the log is read, by this instance or the one holding its lease, at
        least to where it ended at ``moment`` (``time.monotonic()``, just before the
        call): every line written before then is applied."""
        asked: int | None = None  # a maillog_reads number, for another instance's polls
        while self._read_to_end_at <= moment:
            if not self._leading:
                with contextlib.suppress(*DB_ERRORS):  # asked again at the next round
                    asked = asked or await self._pool.fetchval(NEXT_READ)
                    row = await self._pool.fetchrow(SELECT_POSITION, [self._key], self._me)
                    if row is not None and (row["read_to_end"] or 0) > asked:
                        return
            async with self._progress:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await self._progress.wait()

    async def poll(self, *, final: bool = False) -> None:
        """Read what was appended and apply it (plus lines still waiting for their queue
        id), if this instance holds the log's lease or can take it. ``final``: the last
        poll at a stop, this instance's relay already stopped."""
        try:
            await self._poll(final)
        except DB_ERRORS:
            if self._leading:  # the lines wait for the database: how many is worth telling
                self._metrics.maillog_unread.set(self._tail.unread() + self._uncommitted)
            raise

    async def _poll(self, final: bool) -> None:
        began = time.monotonic()
        async with pooled(self._pool) as conn:
            if not self._leading:  # a standby looks without the lock, not to hold up the reader
                row = await conn.fetchrow(SELECT_POSITION, [self._key], self._me)
                if row is not None and row["taken"]:
                    return
            async with conn.transaction():
                if not await conn.fetchval(TRY_POLL, self._key):
                    return  # another instance is polling it right now
                row = await conn.fetchrow(SELECT_POSITION, self._keys, self._me)
                if row is not None and row["taken"]:
                    self._stand_by()
                    return
                if not self._leading or row is None or row["saved_by"] != self._committed:
                    # Another instance read on meanwhile (this one stalled past its
                    # lease), or a commit whose answer was lost went through: what
                    # this instance holds in memory is stale.
                    await self._take_over(conn, row)
                read_no = await conn.fetchval(NEXT_READ)  # drawn before the log is read
                done = await self._read_and_apply(conn, read_no, final)
            # Committed: only now are the lines done with (a failure above keeps them
            # all). Before the connection goes back: its reset may fail.
            self._committed = done.saved
            self._uncommitted = 0
            self._receipts, self._receipts_dropped, self._requeues = [], False, done.requeues
            self._earlier, self._earlier_requeues = [], []
            self._between, self._between_requeues = [], []
            self._holds = self._holds_read
            self._pending, self._pending_saved = done.pending
        for event in done.applied:
            # removed: every message's last line, whatever became of it; a hand-over, no result.
            if event.status != "removed" and event.handed_to is None:
                self._metrics.deliveries.labels(event.status).inc()
        self._metrics.maillog_refused_lines.inc(done.refused)
        self._metrics.maillog_unread.set(done.unread)
        if done.unread == 0:
            async with self._progress:
                self._read_to_end_at = began
                self._progress.notify_all()

    def _read_lines(self) -> _Read:
        """Read what was appended and parse it. This runs in a thread: catching up on a
        busy log parses up to MAX_READ at once (about 200 ms for 4 MiB), which on the
        event loop would hold up every API request meanwhile. Only poll() runs it, and
        nothing else touches the tail or the partial line while it does."""
        appended, new_file = self._tail.read(MAX_READ)
        self._uncommitted += len(appended)
        unread = self._tail.unread()  # at the read: lines written while parsing come next
        if self._tail.lost_lines:  # a session's end and the next one's start among them
            self._forget_sessions()
        if new_file:  # the old file's last line was cut short, it ends there
            self._partial, self._skipped = b"", 0
        lines = _lines(self._partial + appended)
        self._partial = lines.pop()
        if self._skipped and lines:  # the over-long line ends here: its rest is no line
            del lines[0]
            self._skipped = 0
        elif self._skipped:
            self._skipped, self._partial = self._skipped + len(self._partial), b""
        if len(self._partial) > MAX_LINE:
            log.warning("maillog follower: skipping a line of over %d bytes in %s",
                        MAX_LINE, self._path)
            self._skipped, self._partial = len(self._partial), b""
        now = time.time()
        receipts: list[ReceiptLine] = []
        # Each delivery and requeue with how many restarts of its queue id came before it.
        read_deliveries: list[tuple[int, Waiting]] = []
        read_requeues: list[tuple[int, Requeued]] = []
        # Each queue id's restarts: the message of ours each names, if any.
        restarts: dict[str, list[uuid.UUID | None]] = {}
        for raw in lines:
            if not raw:  # between NULs, or a blank line: no line to tell the form by
                continue
            line = split_line(raw.decode("utf-8", "replace"))
            if line is not None and not line.written_by(self._syslog_name):
                line = None  # another Postfix instance's: its queue ids are its own
            if self._unshaped >= 0:
                self._check_form(line)
            if line is None:
                continue
            found, event = self._parsed(line)
            for receipt in found:
                receipts.append(receipt)
                self._other_mail.note(receipt)
                self._arrivals.note(receipt)
                if not receipt.committed:
                    restarts.setdefault(receipt.queue_id, []).append(receipt.message)
            if isinstance(event, UnknownStatus):
                self._unknown_status(event)
            elif isinstance(event, Requeued):
                read_requeues.append((len(restarts.get(event.queue_id, ())), event))
            elif event is not None and not self._other_mail.claims(event):
                event = self._arrivals.handed_over(event)
                read_deliveries.append((len(restarts.get(event.queue_id, ())), (
                    now, replace(event, logged_at=logged_at(line.text, now)))))
        # From the start of the line not read whole: the next reader reads all of it.
        line_start = self._tail.position - len(self._partial) - self._skipped
        earlier, between, deliveries = _split_at_restarts(read_deliveries, restarts,
                                                          lambda waiting: waiting[1].queue_id)
        earlier_requeues, between_requeues, requeues = _split_at_restarts(
            read_requeues, restarts, lambda requeue: requeue.queue_id)
        return _Read(deliveries, earlier, [(message, event) for message, (_, event) in between],
                     receipts, requeues, earlier_requeues, between_requeues, unread,
                     set(restarts), self._named_after_first(restarts, receipts), line_start,
                     self._tail.mark_before(line_start), self._no_queue_stops.saved())

    def _parsed(self, line: LogLine
                ) -> tuple[list[ReceiptLine], DeliveryEvent | UnknownStatus | Requeued | None]:
        """The receipt lines ``line`` is, and its event: both, for a milter's hold (it
        commits a receipt), a client= line an earlier stop of its smtpd process is tied
        to, or a session's end that commits a hold and ties a stop."""
        cut_off = self._cut_offs.receipt(line)
        if cut_off is not None:
            self._no_queue_stops.started(cut_off)  # before the hold it may open is read
        stop, commits = self._no_queue_stops.read(line)
        return ([cut_off, *commits] if cut_off else commits), stop or parse_line(line)

    def _named_after_first(self, restarts: dict[str, list[uuid.UUID | None]],
                           receipts: list[ReceiptLine]) -> dict[str, uuid.UUID]:
        """The messages of ours named first in this read under queue ids whose first line
        an earlier read ended with (lines waiting for them were read after it, as
        _named_by takes them in one read: a HOLD at RCPT, or by header_checks); notes
        the queue ids this read ends with a first line of."""
        named = {queue_id: started[0] for queue_id, started in restarts.items()
                 if queue_id in self._first_read and started[0] is not None}
        for receipt in receipts:
            if not receipt.committed:
                self._first_read.pop(receipt.queue_id, None)
                if receipt.first:
                    self._first_read[receipt.queue_id] = None
        while len(self._first_read) > MAX_PENDING:
            self._first_read.popitem(last=False)
        return named

    def _check_form(self, line: LogLine | None) -> None:
        """Warn once when none of the first FORM_CHECK_LINES lines read is a Postfix
        daemon's in a form the follower reads."""
        if line is not None and line.daemon:
            self._unshaped = -1
            return
        self._unshaped += 1
        if self._unshaped == FORM_CHECK_LINES:
            self._unshaped = -1
            log.warning("maillog follower: none of the %d lines read from %s is a Postfix "
                        "daemon's as the follower reads them ('... postfix/smtp[123]: "
                        "QID: ...', or RFC 5424's '... postfix/smtp 123 - - QID: ...', "
                        "which rsyslog writes 'postfix 123' unless "
                        "parser.permitSlashInProgramName is on; of syslog_name %s): no "
                        "delivery is tracked (is it the maillog_file Postfix writes?)",
                        FORM_CHECK_LINES, self._path, self._syslog_name or "any")

    def _unknown_status(self, line: UnknownStatus) -> None:
        """Count a delivery line whose status this version does not know; warn of each
        status once (never the line's address or reply)."""
        self._metrics.maillog_unknown_status.inc()
        if line.status in self._unknown_named or len(self._unknown_named) >= MAX_UNKNOWN_NAMED:
            return
        self._unknown_named.add(line.status)
        log.warning("maillog follower: %s: a delivery line with status=%.40s, which this "
                    "version does not know, gives its recipient no result (warned once per "
                    "status; all are counted)", line.queue_id, line.status)

    async def _read_and_apply(self, conn: asyncpg.Connection, read_no: int, final: bool
                              ) -> _Applied:
        """Read what was appended and apply it in ``conn``'s transaction (``final``: as
        :meth:`poll`)."""
        read = await asyncio.to_thread(self._read_lines)
        unread = read.unread
        # A line waiting for a queue id that has started afresh since is about the mail
        # that held it before (Postfix reuses short queue ids), whoever takes it now:
        # applied to that mail, if ours, until committed.
        carried = [waiting for waiting in self._pending if waiting[1].queue_id in read.restarted]
        self._earlier = (self._earlier + [waiting for waiting in carried
                                          if waiting[1].queue_id not in read.named]
                         + read.earlier)[-MAX_PENDING:]
        # So is a requeue waiting for it.
        self._earlier_requeues += [requeue for requeue in self._requeues
                                   if requeue.queue_id in read.restarted] + read.earlier_requeues
        self._requeues = [requeue for requeue in self._requeues
                          if requeue.queue_id not in read.restarted] + read.requeues
        queue = [waiting for waiting in self._pending
                 if waiting[1].queue_id not in read.restarted] + read.deliveries
        self._pending = queue[-MAX_PENDING:]  # until applied
        # Kept before the database is asked: a poll that fails keeps them for the next.
        # Those carried that the message named first is known to be about come before
        # this read's own: in log order.
        self._between += [(read.named[event.queue_id], event) for _, event in carried
                          if event.queue_id in read.named] + read.between
        self._between_requeues += read.between_requeues
        self._receipts += read.receipts
        if len(self._receipts) > MAX_PENDING_RECEIPTS:
            # Postgres has been away for long: a dropped line could let another
            # message's line commit a receipt of ours, so every uncommitted one goes.
            log.warning("maillog follower: dropping the %d oldest queue file lines waiting "
                        "for the database, and every receipt not yet committed",
                        len(self._receipts) - MAX_PENDING_RECEIPTS)
            self._receipts = self._receipts[-MAX_PENDING_RECEIPTS:]
            self._receipts_dropped = True
        if self._receipts_dropped:
            await void_uncommitted(conn, self._host)
        self._holds_read = await apply_receipts(conn, self._host, self._receipts,
                                                self._holds)
        # Before the arrivals are noted: maillog_apply then still leaves out those arriving.
        earlier = await apply_earlier(conn, self._host, [event for _, event in self._earlier])
        await move_requeued(conn, self._host, self._earlier_requeues)
        await note_arrivals(conn, self._host, self._receipts, read_no if unread == 0 else None)
        # After: each to the message it is known to be about, whose arrival was just read.
        between = await apply_known(conn, self._host, self._between)
        await move_requeued(conn, self._host, [requeue for _, requeue in self._between_requeues],
                            [message for message, _ in self._between_requeues])
        applied = await apply_events(conn, self._host, [event for _, event in queue])
        requeues = await apply_requeues(conn, self._host, self._requeues)
        # Lines under a requeued message's new queue id are about it from the next poll on
        # (or once its requeue no longer waits): kept with the position, as those awaiting
        # the relay are.
        renamed = {requeue.new_queue_id for requeue in self._requeues}
        kept, others = still_waiting(queue, applied.recorded | applied.refused,
                                     applied.awaited | renamed)
        pending = others + kept  # a cut to MAX_PENDING drops older lines of other mail first
        # Read to the end: nothing left in the file nor in a newer one at the path
        # (the last bytes of a renamed file do not say so).
        read_to_end = unread == 0
        saved = uuid.uuid4()
        # The lease is renewed with the position, at every poll.
        await conn.execute(SAVE_POSITION, self._key, self._tail.inode, read.line_start, self._me,
                           LEASE_SECONDS,
                           saved, read_no if read_to_end else None,
                           saved_form(kept) if kept != self._pending_saved else None,
                           # A restart checks the file still holds these bytes there.
                           fingerprint(read.mark), final and read_to_end,
                           [[r.queue_id, r.new_queue_id] for r in requeues] or None,
                           read.stops)
        return _Applied(unread, _events(self._earlier, earlier) + _events(self._between, between)
                        + _events(queue, applied),
                        len(earlier.refused) + len(between.refused) + len(applied.refused),
                        (pending, kept), requeues, saved)


_T = TypeVar("_T")


def _split_at_restarts(read: list[tuple[int, _T]], restarts: dict[str, list[uuid.UUID | None]],
                       queue_id: Callable[[_T], str]
                       ) -> tuple[list[_T], list[tuple[uuid.UUID, _T]], list[_T]]:
    """Of ``read`` (each with how many of ``restarts`` of its queue id came before it),
    those read before the first restart of their queue id, those of a message of ours
    that arrived under it before its last (with it), and those of the last."""
    earlier: list[_T] = []
    between: list[tuple[uuid.UUID, _T]] = []
    later: list[_T] = []
    for before, item in read:
        started = restarts.get(queue_id(item), [])
        named = _named_by(started, before)
        if named == len(started) - 1:
            later.append(item)
        elif before == 0:
            earlier.append(item)
        elif (message := started[named]) is not None:
            between.append((message, item))
    return earlier, between, later


def _named_by(started: list[uuid.UUID | None], before: int) -> int:
    """Which of a queue id's restarts names the message a line read after ``before`` of
    them is about: the last before it, or after a message's first line (``client=``,
    naming none), its Message-ID line next (cleanup logs a header_checks HOLD as it reads
    the header, before the Message-ID: ours comes after From, To and Subject)."""
    after_first_line = 0 < before < len(started) and started[before - 1] is None
    return before if after_first_line and started[before] is not None else before - 1


def _events(lines: list[tuple[_T, DeliveryEvent]], applied: Applied) -> list[DeliveryEvent]:
    """The events among ``lines`` that were recorded."""
    return [lines[index][1] for index in applied.recorded]
