"""The audit pipeline: callbacks enqueue, one writer batches into Postgres.

Callbacks only call :meth:`AuditPipeline.submit`, which never waits on the
writer: it appends the event to the journal (one write, no fsync: .journal) and
queues it; when the bounded queue is full (the writer is stuck for longer than
the queue lasts, default 10 000 events) the event is dropped, counted and logged,
since a mail thread must never wait on audit storage. So would an event the
journal cannot take while the writer is not connected to Postgres (or without a
database): it would go to the spool on the same full filesystem. Under tempfail,
the end of message that would let the message in is refused instead of either
(``refusable``). The writer coroutine runs
on the :class:`LoopThread`, owns the asyncpg pool and writes batches of up to
:data:`BATCH_SIZE` events and about :data:`BATCH_BYTES`
(``postwarden_store.audit.weight``), every :data:`FLUSH_SECONDS`, with COPY; the
store makes each storable as it writes it (cut to what Postgres indexes take and
to a bounded weight, flagged ``truncated``). When
Postgres is unreachable, slow or its schema is too old (or a write fails for
any other reason, which is logged with its traceback), batches go to the
local spool (fsync'd) and are replayed in order once it is back (a database that
refuses writes, a standby, is found at connect and said once); event ids
make replay idempotent. Events queued meanwhile are written between the
replay's batches, so that a long replay fills no queue, and a stop ends the
replay, leaving the rest for the next start. A batch Postgres refuses for its *data* (an event it
cannot store, see :data:`DATA_ERRORS`) is not an outage: spooled, it would be
refused again on every replay and hold back everything behind it. So it is
split in halves until the events Postgres refuses stand alone, and only those
are dropped (counted, logged by event id). A batch not written within
:data:`WRITE_TIMEOUT` while Postgres still commits a probe is split the same
way; an event that alone is not written in time is spooled and retried, and
dropped (counted, logged) after :data:`SLOW_EVENT_ATTEMPTS` such attempts,
so that it cannot hold back the events behind it for ever. A timeout may fire
once the commit stood (its answer late): a batch timed out whose events Postgres
then all has is written, neither split, retried nor dropped. The retry delay
grows until a write succeeds, not merely a connect: a database that takes
connections but no writes is not hammered; but while a full spool refuses mail
(:attr:`AuditPipeline.refusing_mail`) the writer tries at least every second, since
every second waited refuses mail, and only the writer drains the spool
(:mod:`~postwarden_milter.backoff`). Without a database the spool is the audit log,
never drained, so ``spool_max_bytes`` applies only with one: it caps a backlog,
and an audit log that grows is for the admin to rotate, not a reason to refuse
mail. A spool that takes no more events (its filesystem full or read-only),
a backlog or the audit log, counts as full, for every worker (they share
spool_dir), until an append, a probe of its filesystem (every
:data:`SPOOL_PROBE_SECONDS`) or Postgres takes them again. Spooled
events older than the audit retention (their month's partition dropped
meanwhile) are not written: the store skips them, and they are counted
(``reason="expired"``) and logged. No error ends the writer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import asyncpg

from postwarden_policies import AuditEvent
from postwarden_policies.occasional import Occasional, log_unsaid
from postwarden_store import (
    DatabaseReadOnly,
    StoreError,
    check_schema_current,
    create_pool,
    database_detail,
    database_problem,
    ending_unanswered,
    read_only,
    url_refusal,
)
from postwarden_store.audit import (
    DURABLE_COMMIT,
    Written,
    count_stored,
    weight,
    write_audit_batch,
)

from .backoff import Backoff
from .journal import LOG_TAIL_BYTES, AuditJournal
from .logcontext import message_context
from .loopthread import LoopThread
from .metrics import Metrics
from .settings import SPOOL_DIR_MODE, SpoolFullAction
from .spool import AuditSpool, HeldLock, SpoolUnreadable, tail_event_ids

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# Of events as stored (postwarden_store.audit.weight): well under a second to write.
BATCH_BYTES = 4 * 1024 * 1024
FLUSH_SECONDS = 0.2
WRITE_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
PROBE_TIMEOUT = 1.0
# Its catalog rows make the commit write WAL and wait for it to be durable, as a
# batch's does (a transaction that wrote none would not wait), with the batch's setting.
PROBE = (f"BEGIN; {DURABLE_COMMIT}; "
         "CREATE TEMPORARY TABLE audit_probe () ON COMMIT DROP; COMMIT")
SLOW_EVENT_ATTEMPTS = 3
SPOOL_PROBE_SECONDS = 1.0
# What the writer's lines said once a minute count (postwarden_policies.occasional),
# as the stop names them.
CONNECTS = "Postgres connects while mail is refused"
RETRIES = "Postgres retries failed while mail is refused"
DROPPED_FULL = "audit events dropped (spool full)"
DROPPED_UNWRITABLE = "audit events dropped (spool unwritable)"
KEPT_UNWRITABLE = "audit events kept in the journal (spool unwritable)"
KEPT_FULL = "audit events kept in the journal (spool full, may be stored)"
KEPT_OVER = "audit events dropped (spool full, may be stored, as many kept already)"
UNJOURNALED = "audit events not journaled (spool_dir unwritable)"
UNCLOSED = "audit journal segments whose close failed"
WRITER_FAILED = "audit writer errors"
SPOOL_UNREADABLE = "times the audit spool could not be read"
SPOOL_DIR_GONE = "tries to make spool_dir again"
UNKNOWN_NOTIFY = "audit events notifying {!r}, no webhook endpoint"

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, StoreError)
# What a write raises when it got no answer (a timeout, the connection lost): its commit
# may have stood.
UNANSWERED = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
# A database that takes no writes (a standby, default_transaction_read_only): found at
# connect, or by a write on a connection made since it became so.
READ_ONLY = (DatabaseReadOnly, asyncpg.ReadOnlySQLTransactionError)
# What the server answers a connect it will refuse however often it is tried, until
# database_url, or the server's roles, databases or pg_hba.conf, are changed: a role or
# password refused (SQLSTATE class 28), a database that does not exist (3D000), an option
# of the URL it does not know (42704) or whose value it refuses (22023).
REFUSALS = (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError,
            asyncpg.UndefinedObjectError, asyncpg.InvalidParameterValueError)
# What one event's values can make a write raise: Postgres refusing them (SQLSTATE
# classes 22 and 23, and 54: an index entry too big, say), or asyncpg failing to
# encode them (UnicodeEncodeError, a bad uuid: ValueError; an integer out of range:
# OverflowError).
DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
               asyncpg.ProgramLimitExceededError, ValueError, OverflowError)


async def _takes_writes(conn: asyncpg.Connection) -> None:
    """Raise unless the schema is current and the database takes writes."""
    await check_schema_current(conn)
    if await read_only(conn):  # else each retry connected, and said so
        raise DatabaseReadOnly


def _unknown_as_nan(read: Callable[[], int]) -> Callable[[], float]:
    """``read`` for a gauge: NaN while the spool cannot be looked at (EACCES, EIO), which
    else failed every scrape, all the metrics unseen."""

    def value() -> float:
        try:
            return read()
        except SpoolUnreadable:
            return math.nan

    return value


class WriteTimeout(TimeoutError):
    """A batch was not written within :data:`WRITE_TIMEOUT` (once it had a connection)."""


class AuditPipeline:
    def __init__(
        self,
        database_url: str | None,
        spool: AuditSpool,
        metrics: Metrics,
        *,
        queue_size: int,
        spool_full_action: SpoolFullAction,
        journal: AuditJournal | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = database_url
        self._spool = spool
        self._journal = journal
        self._metrics = metrics
        self._full_action = spool_full_action
        self._queue: queue.Queue[AuditEvent] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._pool: asyncpg.Pool | None = None
        self._backoff = Backoff(lambda: self.refusing_mail, clock)
        self._clock = clock
        self._probed_at = float("-inf")  # when the spool's filesystem was last probed
        self._occasional = Occasional(clock=clock)
        self._slow_event = ("", 0)  # the event last written alone too slowly, and how often
        self._read_only_said = False  # since the database last took a connect
        # Events the spool could not take, in the journal: delivered again once it or
        # Postgres takes events (else they waited there for the next start).
        self._kept: list[AuditEvent] = []
        # Ids of events a write got no answer for (its commit may have stood), not counted
        # written since: counted once a write or a count finds them stored.
        self._unanswered: set[str] = set()
        self._writer: concurrent.futures.Future[None] | None = None
        self._spool_dir_lock = HeldLock()  # on a spool_dir this writer made again
        metrics.audit_queue_depth.set_function(self._queue.qsize)
        metrics.spool_bytes.set_function(_unknown_as_nan(lambda: spool.size))
        if database_url is not None:  # else the spool is the audit log: nothing to replay
            metrics.spool_pending_bytes.set_function(_unknown_as_nan(lambda: spool.unreplayed))

    # --- callback side (any thread) ------------------------------------------

    def submit(self, event: AuditEvent, *, refusable: bool = False) -> bool:
        """Journal and queue ``event``. With ``refusable`` (its message not answered yet,
        and let in by the answer), under tempfail, False when it can be stored nowhere
        (:meth:`_unstorable`) or the queue is full: not queued, the caller refuses the
        message instead (a dropped event is an audit row lost for a message let in)."""
        refusable = refusable and self._full_action is SpoolFullAction.TEMPFAIL
        if refusable and self._queue.full():
            return False  # before the journal, whose line a next start would store
        if (self._journal is not None and not self._journal_append(self._journal, event)
                and refusable and self._unstorable()):
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:  # filled meanwhile, or not refusable
            self._dropped([event], "queue_full")
            log.error("audit queue full: event %s dropped (writer stuck?)", event.event_id)
        return True

    def _journal_append(self, journal: AuditJournal, event: AuditEvent) -> bool:
        """On disk before the callback answers (.journal); False when the journal could
        not take it (counted, said once a minute)."""
        try:
            journal.append(event)
        except OSError as exc:
            self._metrics.errors.labels("audit_journal").inc()
            if (unjournaled := self._occasional.due(UNJOURNALED)) is not None:
                log.error("cannot append to the audit journal (%s): %s", exc.strerror,
                          unjournaled)
            return False
        return True

    def _rotate_journal(self) -> None:
        """The journal's next segment from now on. One whose close failed (NFS: a write
        it deferred) is counted and said once a minute: its events, in the queue still,
        are delivered as ever, but may not be on disk for a start after a kill. Raised,
        it ended the writer's turn before the batch, at every turn."""
        if self._journal is None:
            return
        try:
            self._journal.rotate()
        except OSError as exc:
            self._metrics.errors.labels("audit_journal").inc()
            if (said := self._occasional.due(UNCLOSED)) is not None:
                log.error("cannot close an audit journal segment (%s): its events may be "
                          "lost if the milter ends without a stop before they are stored "
                          "or spooled: %s", exc.strerror, said)

    def _unstorable(self) -> bool:
        """An event the journal could not take (spool_dir full or read-only): its batch
        would go to the spool, on the same filesystem (no database, or the writer not
        connected to it), and be lost with it. While the writer is connected, Postgres
        most likely takes it: no mail is refused for a journal alone. Read without
        waiting on the writer (a callback's thread)."""
        return self._dsn is None or self._pool is None

    def _dropped(self, events: list[AuditEvent], reason: str) -> None:
        """Count ``events`` dropped, and mark them so in the journal: a segment spans
        several batches while the writer is behind, and one a kill left would give them
        to the next start to store."""
        self._metrics.audit_dropped.labels(reason).inc(len(events))
        self._unanswered.difference_update(event.event_id for event in events)
        if self._journal is not None:
            self._journal.dropped(events)

    def _settled(self, events: list[AuditEvent]) -> None:
        """Stored, spooled, or counted dropped: out of the journal."""
        if self._journal is not None:
            self._journal.settled(events)

    @property
    def _spool_failing(self) -> bool:
        """The last append to a spool failed (a full or read-only filesystem), this
        worker's or another's (SpoolBudget): with a database, as good as a full backlog
        until an append or Postgres takes events."""
        return self._spool.budget.unwritable

    @_spool_failing.setter
    def _spool_failing(self, failed: bool) -> None:
        self._spool.budget.unwritable = failed

    @property
    def refusing_mail(self) -> bool:
        """True while the backlog is full, or the spool takes no more events (a full or
        read-only filesystem: without a database, the audit log), and the admin chose to
        tempfail new mail."""
        return self._full_action is SpoolFullAction.TEMPFAIL and (
            self._backlog_full or self._spool_failing)

    @property
    def _backlog_full(self) -> bool:
        """The spools, a backlog for the database, reached ``spool_max_bytes``."""
        return self._dsn is not None and self._spool.full

    @property
    def _spool_drops(self) -> bool:
        """The backlog is full and the admin chose to drop events rather than refuse mail."""
        return self._backlog_full and self._full_action is SpoolFullAction.DROP

    # --- lifecycle -----------------------------------------------------------

    def start(self, loop_thread: LoopThread) -> None:
        if self._journal is not None:  # replayed with the spool
            self._adopt(self._journal)
        self._writer = loop_thread.submit(self._run())

    def _adopt(self, journal: AuditJournal) -> None:
        """Spool the journal segments the previous process left."""
        # Without a database the spool is the audit log: no event in it twice.
        known = tail_event_ids(self._spool.path, LOG_TAIL_BYTES) if self._dsn is None else ()
        journal.adopt(self._spool.append_lines, known,
                      damaged=self._metrics.audit_dropped.labels("unreadable").inc)

    def stop(self, timeout: float = 30.0) -> None:
        """Drain the queue (to Postgres or the spool) and close the pool."""
        self._stopping.set()
        if self._writer is None:
            return
        try:
            self._writer.result(timeout)
        except (TimeoutError, concurrent.futures.CancelledError):
            # The journal's count: the queue's left out the batch being written, and
            # the events the spool could not take.
            left = self._queue.qsize() if self._journal is None else self._journal.unsettled
            log.error("audit writer did not drain within %.0f s; %d events left in the "
                      "journal for the next start", timeout, left)
        self._rotate_journal()  # what was not settled stays, for the next start
        log_unsaid(self._occasional, log)

    # --- writer (loop thread) ------------------------------------------------

    def _take(self) -> list[AuditEvent]:
        """A batch from the queue; events submitted from now on go to a new journal
        segment, so that the segments before can go once settled."""
        self._rotate_journal()
        batch: list[AuditEvent] = []
        size = 0
        while len(batch) < BATCH_SIZE and size < BATCH_BYTES:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(event)
            size += weight(event)
        return batch

    async def _run(self) -> None:
        try:
            while not (self._stopping.is_set() and self._queue.empty()):
                if self._queue.qsize() < BATCH_SIZE and not self._stopping.is_set():
                    # Polling, rather than waiting on the queue, spares each mail
                    # thread a hand-off to this one per event (measured: 6% of
                    # the milter's CPU on a 4 KB message).
                    await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await self._turn()
                except SpoolUnreadable as exc:  # refreshing its size
                    self._spool_unreadable(exc)
                except Exception as exc:  # noqa: BLE001 - an ended writer loses every event after
                    self._unexpected(exc)
                    await asyncio.sleep(FLUSH_SECONDS)  # one that comes back at once: no spin
        finally:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None

    async def _turn(self) -> None:
        """A batch delivered, or with none, the spool looked after."""
        self._spool_dir_back()
        self._adopt_leftover()
        if batch := self._take():
            await self._deliver_or_drop(batch)
            return
        if batch := self._take_kept():
            await self._deliver_or_drop(batch, maybe_stored=True)
            return
        self._spool.refresh()  # moved away by hand, say: full no longer
        if self._spool_failing and self._spool_takes_writes():
            self._spool_failing = False  # room made, say: appends may go on
        # Connected whenever it can be, with no event to write too: while it is
        # not, a journal that takes no event refuses mail (_unstorable).
        if (self._dsn is not None
                and (self._spool or self._spool_failing or self._pool is None)
                and await self._connected() and await self._replay()):
            self._spool_failing = False

    def _unexpected(self, exc: Exception) -> None:
        """Count an error no part of the writer handled (a bug), and say it with its
        traceback once a minute: the writer goes on."""
        self._metrics.errors.labels("audit_writer").inc()
        if (said := self._occasional.due(WRITER_FAILED)) is not None:
            log.error("audit writer: unexpected error, still writing (%s)", said, exc_info=exc)

    def _spool_dir_back(self) -> None:
        """spool_dir removed while the milter runs (an rm -r, a cleanup job): made again
        as a start makes it (mode 0700, this user's), and locked as a start locks it,
        so that no other milter takes it (the supervisor locks it too, for the workers
        it starts later: .spool.SpoolDirLock). Without it the journal and the spool take
        nothing: in an outage of Postgres mail stayed refused (or events dropped) until
        a mkdir or a restart. Of several workers, the one that made it says so; one
        that cannot be made is said once a minute, with what to do."""
        directory = self._spool.path.parent
        try:
            os.stat(directory)
        except FileNotFoundError:
            self._make_spool_dir(directory)
        except OSError:  # there, but not to be looked at: the spool's reads say it
            return

    def _make_spool_dir(self, directory: Path) -> None:
        try:
            directory.mkdir(SPOOL_DIR_MODE, parents=True)
            self._spool_dir_lock.take(directory)  # the supervisor's joins it
        except FileExistsError as exc:
            if not directory.is_dir():  # a link to one removed, say
                self._not_made(directory, exc)
            return  # another worker's writer made it, and locked it
        except OSError as exc:
            self._not_made(directory, exc)
            return
        log.warning("spool_dir %s was removed while the milter ran: made again (mode 0700), "
                    "as a start makes it; what it held is lost", directory)

    def _not_made(self, directory: Path, exc: OSError) -> None:
        self._metrics.errors.labels("audit_spool").inc()
        if (said := self._occasional.due(SPOOL_DIR_GONE)) is not None:
            log.error("spool_dir %s was removed and cannot be made again (%s): audit "
                      "events can be neither journaled nor spooled; create it (mode "
                      "0700, owned by the milter's user) or restart the milter: %s",
                      directory, exc.strerror or exc, said)

    def _adopt_leftover(self) -> None:
        """The segments a start could not spool (a full filesystem), once the spool takes
        writes again: spooled ahead of the events kept meanwhile, not left for the next
        start. Tried at most every SPOOL_PROBE_SECONDS (a probe first)."""
        if (self._journal is not None and self._journal.leftover
                and not self._spool_failing and self._spool_takes_writes()):
            self._adopt(self._journal)

    def _take_kept(self) -> list[AuditEvent]:
        """A batch of the events kept in the journal, once the spool or Postgres takes
        events again (a full spool under drop would drop them: not while disconnected)."""
        if self._spool_failing or (self._spool_drops and self._pool is None):
            return []
        batch, self._kept = self._kept[:BATCH_SIZE], self._kept[BATCH_SIZE:]
        return batch

    def _spool_takes_writes(self) -> bool:
        """Probed at most every SPOOL_PROBE_SECONDS: with no database, or none up, no
        other way ends a refusal, as refused mail brings no events to append."""
        now = self._clock()
        if now - self._probed_at < SPOOL_PROBE_SECONDS:
            return False
        self._probed_at = now
        return self._spool.takes_writes()

    async def _deliver_or_drop(self, batch: list[AuditEvent], maybe_stored: bool = False
                               ) -> None:
        """Deliver, and settle the batch unless the spool could not take it (what the
        journal holds of it is delivered again once the spool or Postgres takes events,
        or spooled at the next start); one that fails otherwise is counted dropped, and
        the writer goes on. ``maybe_stored``: :meth:`_to_spool`."""
        try:
            settled = await self._deliver(batch, maybe_stored)
        except Exception:
            self._dropped(batch, "error")
            log.exception("audit writer: unexpected error, %d events dropped", len(batch))
            settled = True
        if settled:
            self._settled(batch)

    async def _deliver(self, batch: list[AuditEvent], maybe_stored: bool = False) -> bool:
        """Written or spooled (or dropped, :meth:`_to_spool`): False when the spool could
        not take it. Written after the spool's replay, or once a stop ended it (the
        rest is replayed at the next start): spooled behind it, over a full spool under
        drop, the queue was dropped with Postgres there to take it."""
        try:
            if (self._dsn is not None and await self._connected()
                    and (await self._replay() or self._pool is not None)):
                await self._write(batch)
                self._spool_failing = False  # Postgres takes events: the spool is no limit
                return True
        except Exception as exc:  # noqa: BLE001 - the spool keeps the batch, whatever failed
            await self._disconnect(exc)
            maybe_stored = maybe_stored or isinstance(exc, UNANSWERED)
        return self._to_spool(batch, maybe_stored)

    async def _write(self, batch: list[AuditEvent]) -> None:
        """Write a batch; one Postgres refuses for its data, or takes too long to write
        while it commits a probe (and its commit did not stand: :meth:`_committed_late`),
        is halved until the events at fault stand alone. Those it refuses are dropped;
        one too slow is dropped after SLOW_EVENT_ATTEMPTS tries, and until then fails the
        write. Any other error propagates."""
        try:
            await self._copy(batch)
        except DATA_ERRORS as exc:
            if len(batch) == 1:
                self._write_dropped(batch, "unstorable")
                # The type only: a message from Postgres may quote the offending value.
                with message_context(batch[0].queue_id, batch[0].message_uid):
                    log.error("audit event %s refused by Postgres (%s): dropped",
                              batch[0].event_id, type(exc).__name__)
                return
            await self._write_halves(batch)
        except WriteTimeout:
            await self._probe()  # raises when Postgres cannot commit: an outage
            if await self._committed_late(batch):
                return
            if len(batch) > 1:
                await self._write_halves(batch)
            elif self._slow_again(batch[0]):
                self._write_dropped(batch, "timeout")
                with message_context(batch[0].queue_id, batch[0].message_uid):
                    log.error("AUDIT EVENT %s DROPPED: not written within %.0f s in %d "
                              "attempts while Postgres committed a probe", batch[0].event_id,
                              WRITE_TIMEOUT, SLOW_EVENT_ATTEMPTS)
            else:
                raise

    async def _committed_late(self, batch: list[AuditEvent]) -> bool:
        """After its write timed out: True when every event of ``batch`` is stored (counted
        written), its commit having stood, the answer late. A batch is one transaction:
        stored in part, it was not by this write (a replay after a kill) and is written
        again. Raises when Postgres does not answer, as for an outage: the connection
        ended (ending_unanswered), whose release waited WRITE_TIMEOUT more for a cancel
        of the count that a frozen server never acknowledges."""
        assert self._pool is not None  # noqa: S101 - only after a write on the pool
        async with self._pool.acquire(timeout=WRITE_TIMEOUT) as conn:
            with ending_unanswered(conn):
                stored = await asyncio.wait_for(count_stored(conn, batch), WRITE_TIMEOUT)
        ids = {event.event_id for event in batch}
        if stored < len(ids):
            return False
        self._count_written(batch, 0, ids)
        self._backoff.reset()
        return True

    def _write_dropped(self, batch: list[AuditEvent], reason: str) -> None:
        """:meth:`_dropped`, and marked so in the spool when a replay read them from it:
        replayed again after a kill (from the last batch done, or the spool's start), they
        would be stored or refused again. Only here: the spool is the writer thread's."""
        self._spool.dropped(batch)
        self._dropped(batch, reason)

    async def _write_halves(self, batch: list[AuditEvent]) -> None:
        middle = len(batch) // 2
        await self._write(batch[:middle])
        await self._write(batch[middle:])

    def _slow_again(self, event: AuditEvent) -> bool:
        """Count a write of ``event`` alone that timed out; True at the last allowed."""
        last, count = self._slow_event
        count = count + 1 if last == event.event_id else 1
        self._slow_event = (event.event_id, count)
        return count >= SLOW_EVENT_ATTEMPTS

    async def _copy(self, batch: list[AuditEvent]) -> None:
        assert self._pool is not None  # noqa: S101 - callers checked _connected()
        conn = await self._pool.acquire(timeout=WRITE_TIMEOUT)
        try:
            written = await asyncio.wait_for(write_audit_batch(conn, batch), WRITE_TIMEOUT)
        except UNANSWERED as exc:
            self._unanswered.update(event.event_id for event in batch)
            if isinstance(exc, TimeoutError):
                raise WriteTimeout from exc
            raise
        finally:
            # Bounded: after a timeout the release waits for Postgres to cancel the query.
            await self._pool.release(conn, timeout=WRITE_TIMEOUT)
        if written.expired:
            self._metrics.audit_dropped.labels("expired").inc(written.expired)
            log.warning("%d audit events older than the audit retention not written "
                        "(their month was dropped)", written.expired)
        self._count_written(batch, written.new, written.found)
        self._unknown_notify(written)
        self._backoff.reset()

    def _count_written(self, batch: list[AuditEvent], new: int, found: Iterable[str]) -> None:
        """Count written the ``new`` events of ``batch``, and those ``found`` stored already
        whose write got no answer (its commit stood): each event stored counted once. Not
        the others found, stored by an answered write or a process before (a replay)."""
        late = sum(1 for event_id in found if event_id in self._unanswered)
        self._unanswered.difference_update(event.event_id for event in batch)
        self._metrics.audit_written.inc(new + late)

    def _unknown_notify(self, written: Written) -> None:
        """Count and say (once a minute each) the events whose policy's notify names a
        webhook endpoint that does not exist: the database raises nothing for it."""
        for endpoint, count in written.unknown_notify:
            self._metrics.notify_unknown.labels(endpoint).inc(count)
            said = self._occasional.due(UNKNOWN_NOTIFY.format(endpoint), count)
            if said is not None:
                log.warning("audit events notify webhook endpoint %r, which does not exist: "
                            "nothing is sent to it (create it, or fix the policy's notify): "
                            "%s", endpoint, said)

    async def _probe(self) -> None:
        """Return when Postgres commits a trivial write within PROBE_TIMEOUT, else raise.
        A write, for a database that answers reads but cannot commit (a disk stall, a
        synchronous standby away) is out, not slowed by the batch."""
        assert self._pool is not None  # noqa: S101 - only after a write on the pool
        async with self._pool.acquire(timeout=PROBE_TIMEOUT) as conn:
            await asyncio.wait_for(conn.execute(PROBE), PROBE_TIMEOUT)

    async def _replay(self) -> bool:
        """Write the spooled events in order, and between their batches those queued
        meanwhile; False when Postgres failed meanwhile, or the milter stops (what is
        left is replayed at the next start)."""
        if self._dsn is None:
            return True
        try:
            if not self._spool:
                return True
            if self._stopping.is_set():
                return False
            for events, offset in self._spool.batches(
                    BATCH_SIZE, self._spool.replayed, max_bytes=BATCH_BYTES,
                    unreadable=self._metrics.audit_dropped.labels("unreadable").inc):
                if self._stopping.is_set():
                    return False
                try:
                    await self._write(events)
                finally:
                    self._spool.sync_dropped()
                self._spool.replayed_to(offset)  # room again, for a tempfail to end
                self._metrics.audit_replayed.inc(len(events))
                await self._write_queued()
            log.warning("audit spool replayed into Postgres (%d bytes)", self._spool.size)
        except SpoolUnreadable as exc:  # Postgres takes events: new ones are written
            self._spool_unreadable(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - the spool keeps the events, whatever failed
            await self._disconnect(exc)
            return False
        self._clear_spool()
        return True

    def _clear_spool(self) -> None:
        """Emptied once all of it is in Postgres; one that cannot be (made read-only) keeps
        what was replayed, out of the next replay: said and counted, not taken for an
        outage of Postgres."""
        try:
            self._spool.clear()
        except OSError as exc:
            self._metrics.errors.labels("audit_spool").inc()
            log.error("cannot empty the audit spool once replayed (%s): its events are in "
                      "Postgres, and the next replay goes on past them", exc.strerror)

    def _spool_unreadable(self, exc: SpoolUnreadable) -> None:
        """Count and say (once a minute) a spool that could not be read, by a replay or
        for its size; tried again at each batch, and every FLUSH_SECONDS while idle."""
        self._metrics.errors.labels("audit_spool").inc()
        if (said := self._occasional.due(SPOOL_UNREADABLE)) is not None:
            log.error("cannot read the audit spool (%s): its events wait there until it can "
                      "be, new events are written to Postgres: %s", exc, said)

    async def _write_queued(self) -> None:
        """The queue, during a replay: a spool of an hour's outage takes minutes to
        replay, and meanwhile the queue would fill and drop new mail's events. A batch
        that cannot be written is spooled (after the rest of the backlog). One a stop
        cut mid-write (the loop's end cancels the writer) stays in the journal."""
        while batch := self._take():
            try:
                await self._write(batch)
            except Exception as exc:
                if self._to_spool(batch, isinstance(exc, UNANSWERED)):
                    self._settled(batch)
                raise
            self._settled(batch)
            if len(batch) < BATCH_SIZE:  # that emptied it: back to the replay
                return

    async def _connected(self) -> bool:
        if self._pool is not None:
            return True
        if not self._backoff.due():
            return False
        assert self._dsn is not None  # noqa: S101 - only called with a database
        try:
            # No floor (min_size 0): asyncpg would reconnect a lost floor connection by
            # itself, logging a traceback every few seconds of an outage; this writer
            # reconnects on its own schedule, and says so in one line.
            pool = await create_pool(
                self._dsn, min_size=0, max_size=2, connect_timeout=CONNECT_TIMEOUT
            )
        except DB_ERRORS as exc:
            self._schedule_retry(exc)
            return False
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                # Bounded: a lock held on schema_migrations, or a database frozen since
                # the connect, held the writer (nothing spooled, the queue full).
                with ending_unanswered(conn):
                    await asyncio.wait_for(_takes_writes(conn), CONNECT_TIMEOUT)
        except DB_ERRORS as exc:
            pool.terminate()
            self._schedule_retry(exc)
            return False
        # Reconnected every second while mail is refused, if writes keep failing after
        # each connect (a full disk, a read-only standby): said once a minute then.
        if not self.refusing_mail:
            log.info("audit writer connected to Postgres")
        elif (connects := self._occasional.due(CONNECTS)) is not None:
            log.info("audit writer connected to Postgres (connects while mail is refused: %s)",
                     connects)
        # The retry delay stays until a write succeeds: one that fails after every
        # connect must not make the writer reconnect (and warn) twice a second.
        self._pool = pool
        self._read_only_said = False
        return True

    def _schedule_retry(self, exc: BaseException) -> None:
        self._backoff.failed()
        if isinstance(exc, READ_ONLY):
            self._metrics.errors.labels("audit_db").inc()
            self._say_read_only()
            return
        # url_refusal: what database_url's own options cause, refused at start as well
        # (TLS the server does not offer, a root certificate missing).
        refused = isinstance(exc, REFUSALS) or url_refusal(exc, self._dsn) is not None
        if refused:  # not an outage: no wait mends it, the admin must
            self._metrics.errors.labels("audit_db_refused").inc()
        else:
            self._metrics.errors.labels("audit_db").inc()
        # Tried every second while mail is refused: said once a minute, with a count.
        refusing = self.refusing_mail
        failed = self._occasional.due(RETRIES) if refusing else None
        if refusing and failed is None:
            return
        tries = f" (tries failed: {failed})" if failed else ""
        if refused:  # at each try, up to every 30 s: an error to fix, not to wait out
            log.error("audit database refuses database_url (%s): fix database_url or the "
                      "server's roles, databases or pg_hba.conf; spooling, retry in "
                      "%.1f s%s", database_problem(exc), self._backoff.wait, tries)
            return
        detail = database_detail(exc)
        log.warning("audit database unavailable (%s); spooling, retry in %.1f s%s%s",
                    type(exc).__name__, self._backoff.wait, tries,
                    f": {detail}" if detail else "")

    def _say_read_only(self) -> None:
        """Once until the database takes a connect again: it stays read-only until
        promoted or reset, and each retry said it, with the server's words on a SELECT
        FOR SHARE, as if it were away."""
        if self._read_only_said:
            return
        self._read_only_said = True
        log.error("audit database refuses writes (read-only: a standby, or "
                  "default_transaction_read_only on): audit events are spooled until it "
                  "takes them; point database_url at the primary")

    async def _disconnect(self, exc: Exception) -> None:
        if not isinstance(exc, DB_ERRORS):  # a bug rather than an outage: keep its traceback
            log.error("audit writer: unexpected error writing to Postgres", exc_info=exc)
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
        self._schedule_retry(exc)

    def _to_spool(self, batch: list[AuditEvent], maybe_stored: bool = False) -> bool:
        """Spool the batch, or drop it when the spool is full and the admin chose to; False
        when the spool could not take it (a full or read-only filesystem): it stays
        unsettled, and the events the journal holds of it (on disk already, written when
        there was room for them) are delivered again once the spool or Postgres takes
        events (:meth:`_take_kept`), or spooled at the next start. Those it has none of
        are dropped. :meth:`_drop_full` for a full spool under drop."""
        if self._spool_drops:
            return self._drop_full(batch, maybe_stored)
        try:
            self._spool.append(batch)
        except OSError as exc:
            self._spool_failing = True
            self._unspooled(batch, exc)
            return False
        self._spool_failing = False
        self._metrics.audit_spooled.inc(len(batch))
        if self._backlog_full:
            log.error("AUDIT SPOOL FULL (%d bytes >= %d): %s", self._spool.budget.used,
                      self._spool.budget.max_bytes,
                      "new mail is tempfailed" if self.refusing_mail else "events will be dropped")
        return True

    def _drop_full(self, batch: list[AuditEvent], maybe_stored: bool) -> bool:
        """Drop the batch, the spool full; but of one ``maybe_stored`` (its write got no
        answer, its commit may have stood; or kept already) keep the events the journal
        holds, as for a spool that cannot take them (:meth:`_keep_full`): counted dropped,
        they may be stored, and a later write stores them once (event ids). False when
        some are kept."""
        rest = self._keep_full(batch) if maybe_stored else batch
        kept = len(batch) - len(rest)
        if kept and (said := self._occasional.due(KEPT_FULL, kept)) is not None:
            log.error("AUDIT SPOOL FULL (%d bytes): events that may be stored (a write got "
                      "no answer) kept in the audit journal until Postgres takes them, not "
                      "dropped: %s", self._spool.budget.used, said)
        if rest:
            self._dropped(rest, "spool_full")
            if (dropped := self._occasional.due(DROPPED_FULL, len(rest))) is not None:
                log.error("AUDIT SPOOL FULL (%d bytes): events dropped: %s",
                          self._spool.budget.used, dropped)
        return not kept

    def _keep_full(self, batch: list[AuditEvent]) -> list[AuditEvent]:
        """:meth:`_keep`, up to audit_queue_size events kept in all: each is delivered again
        until Postgres answers, and a database that takes connections but no writes made
        them ever more (in memory). Those the journal holds past it are returned with the
        others, to be dropped; said once a minute."""
        rest = self._keep(batch, max(self._queue.maxsize - len(self._kept), 0))
        over = len(self._journal.held(rest)) if rest and self._journal is not None else 0
        if over and (said := self._occasional.due(KEPT_OVER, over)) is not None:
            log.error("AUDIT SPOOL FULL (%d bytes): %d events that may be stored (a write got "
                      "no answer) are kept in the audit journal, audit_queue_size: those past "
                      "it are dropped: %s", self._spool.budget.used, len(self._kept), said)
        return rest

    def _keep(self, batch: list[AuditEvent], at_most: int | None = None) -> list[AuditEvent]:
        """Keep the events of ``batch`` the journal holds (``at_most`` of them), to deliver
        them again (:meth:`_take_kept`); the others are returned."""
        held = self._journal.held(batch)[:at_most] if self._journal is not None else []
        self._kept.extend(held)
        kept = {event.event_id for event in held}
        return [event for event in batch if event.event_id not in kept]

    def _unspooled(self, batch: list[AuditEvent], exc: OSError) -> None:
        """Count and say (once a minute) the events of a batch the spool could not take:
        kept in the journal, or dropped where it holds none of them."""
        rest = self._keep(batch)
        kept = len(batch) - len(rest)
        tempfailed = "; new mail is tempfailed" if self.refusing_mail else ""
        if kept and (said := self._occasional.due(KEPT_UNWRITABLE, kept)) is not None:
            log.error("cannot append to the audit spool (%s): events kept in the audit "
                      "journal until it or Postgres takes them: %s%s", exc.strerror, said,
                      tempfailed)
        if not rest:
            return
        self._dropped(rest, "spool_error")
        if (dropped := self._occasional.due(DROPPED_UNWRITABLE, len(rest))) is not None:
            log.error("cannot append to the audit spool (%s): events dropped: %s%s",
                      exc.strerror, dropped, tempfailed)
