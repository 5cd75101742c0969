"""What Postfix's log says of an interrupted attempt: its message queued, not queued,
or not known yet.

A relay attempt is interrupted when its outcome was never stored (the service
died) or its answer never came (the connection dropped after the message went
out). Before sending such a message again, the relay asks the log follower's
receipts (:mod:`.receipts`). While the log cannot tell yet, the answer is
:class:`Undecided` and the row is put off (:data:`LOG_RECHECK`), costing no
attempt and sending nothing:

- cleanup took the message in and the queue manager has yet to log it (a
  backlogged qmgr), for as long as :mod:`.receipts` counts such a receipt open
  (smtpd's line of a transfer cut off before the final dot closes it at once:
  :mod:`.cutoffs`); no other line tells a finished incoming file from one an
  aborted transfer left, so where Postfix's queue can be listed
  (:class:`PostfixQueue`), a file listed there under the receipt's queue id is
  the commit, however late qmgr is;
- the log that may show the attempt has not been read to its end since the row
  was first looked at: that of the host whose Postfix the attempt went to (the
  relay's claim names it, migration 0025), unless the instance that made it read
  that log to its end at its stop, its relay stopped first; when that is not known
  (a row of an older version), this host's and every other host's that read
  within :data:`LOG_LAG_LIMIT`. The row is looked at again every
  :data:`READ_RECHECK` (a reader reads every half second), and past
  :data:`LOG_WAIT_SECONDS` it counts as held up by a log behind, looked at every
  :data:`LOG_RECHECK`: until it has been held up for :data:`LOG_LAG_LIMIT` (per
  process), then the row is decided as without a log, at ERROR, since an outage
  of the log must not keep mail back for good.

No row is waited for inline, the relay going on with its other rows meanwhile, but
one whose open receipt is older than the queue manager's 10 minutes where Postfix's
queue can be listed: the listing (``postqueue -j``, up to :data:`POSTQUEUE_SECONDS`)
and a read of this host's log past it (up to :data:`LOG_WAIT_SECONDS`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from postwarden_admin_api.periodic import pooled

from .maillog import NEXT_READ, MaillogFollower
from .receipts import Commit, Opened, committed, opened
from .relayoutcomes import Claimed
from .scrub import for_log

log = logging.getLogger(__name__)

LOG_WAIT_SECONDS = 60.0  # for the log to be read to its end, before it counts as behind
READ_RECHECK = dt.timedelta(seconds=1)  # meanwhile, the row is claimed again
LOG_RECHECK = dt.timedelta(seconds=10)  # a row the log cannot settle yet is claimed again
LOG_LAG_LIMIT = 1800.0
POSTQUEUE_SECONDS = 30.0
# Whether a log that may show an interrupted attempt has not been read to its end since
# read number $1 was drawn: the one keyed $2, the attempt's (made by reader $3), unless
# that reader read it to its end at its stop; not known ($2 NULL), this host's ($4) and
# every other host's ($5: this host's keys' prefix). Other than this host's, only those
# read within $6. Rows without a leader are older versions', keyed by path alone.
LOGS_BEHIND = """
SELECT EXISTS (SELECT FROM maillog_positions
               WHERE leader IS NOT NULL AND coalesce(read_to_end, 0) <= $1
                 AND (path = $4 OR updated_at > now() - $6::interval)
                 AND CASE WHEN $2::text IS NULL THEN path = $4 OR NOT starts_with(path, $5)
                          ELSE path = $2
                               AND NOT (read_to_stop AND leader IS NOT DISTINCT FROM $3) END)
"""


@dataclass(frozen=True, slots=True)
class Undecided:
    """Postfix's log cannot tell yet whether an interrupted attempt's message was queued;
    ``reason`` (as the ``postwarden_relay_put_off`` metric counts it): ``open_receipt``,
    cleanup took it in and qmgr has yet to log it, or ``log_behind``, the follower has
    not read the log to its end; None: not read to its end since the row was first
    looked at, for less than LOG_WAIT_SECONDS. ``recheck``: when to look again."""

    reason: str | None
    recheck: dt.timedelta = LOG_RECHECK


@dataclass(slots=True)
class _Waiting:
    """A row whose attempt's log was not read to its end when it was first looked at."""

    read: int  # the maillog_reads number drawn then: a read since has read past the attempt
    since: float  # then (monotonic)
    behind: float | None = None  # when it first counted as held up by a log behind


class PostfixQueue:
    """This host's Postfix's queue files, as ``postqueue -j`` lists them (``-c``:
    ``config_dir``, the relay's Postfix instance). showq lists only a file cleanup
    finished (made it mode 0700), never one still being written nor one an aborted
    transfer left (removed): what no log line tells apart until qmgr takes it in."""

    def __init__(self, config_dir: Path | None = None) -> None:
        self._command = ["postqueue", *(["-c", str(config_dir)] if config_dir else []), "-j"]

    async def lists(self, queue_id: str) -> bool | None:
        """Whether a finished file ``queue_id`` is in one of the queues; None when
        postqueue cannot tell."""
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            log.warning("relay: cannot list Postfix's queue (%s)", type(exc).__name__)
            return None
        try:
            async with asyncio.timeout(POSTQUEUE_SECONDS):
                listing, errors = await process.communicate()
        finally:  # timed out or cancelled: not left running
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode != 0:
            # Its fatal line says why (no showq access without group postdrop, say).
            log.warning("relay: postqueue -j exited with %d: %s", process.returncode,
                        for_log(errors.decode("utf-8", "replace").strip()[-300:]))
            return None
        try:
            return queue_id in {json.loads(line)["queue_id"] for line in listing.splitlines()}
        except (ValueError, KeyError, TypeError):
            log.warning("relay: postqueue -j printed something else than its queue")
            return None


class InterruptedAttempts:
    """The log's answers about interrupted attempts, for one relay worker."""

    def __init__(self, pool: asyncpg.Pool, maillog: MaillogFollower | None,
                 queue: PostfixQueue | None = None) -> None:
        """``queue``: the queue of the Postfix whose log ``maillog`` reads (None: not
        listed)."""
        self._pool = pool
        self._maillog = maillog
        self._queue = queue
        # Rows whose attempt's log was not read to its end when they were looked at.
        self._waiting: dict[uuid.UUID, _Waiting] = {}

    async def queued(self, row: Claimed) -> Commit | Undecided | None:
        """Where Postfix queued an interrupted attempt's message, when a log shows it;
        Undecided while the log may still show it; None when it shows it was not (or
        there is no log to ask)."""
        message = row.id
        if self._maillog is None:
            log.warning("relay: an attempt to relay message %s was interrupted; without "
                        "maillog_path nothing tells whether Postfix queued it", message)
            return None
        if await self._logs_behind(row, self._maillog):
            undecided = self._unread_for(message)
            if undecided is not None:
                return undecided
        self._waiting.pop(message, None)
        async with pooled(self._pool) as conn:
            commit = await committed(conn, message)
            arriving = None if commit is not None else await opened(conn, message)
        # The queue is asked only past OPEN_RECEIPT_LIMIT: a listing of a backlogged
        # queue is large, and a recent file is left to qmgr's log line meanwhile.
        if arriving is not None and not arriving.recent:
            commit = await self._finished(message, arriving)
            if commit is not None:
                log.warning("relay: an attempt to relay message %s was interrupted after "
                            "Postfix queued it as %s, which qmgr has not taken in yet: not "
                            "sending it again (listed in %s's queue)", message,
                            commit.queue_id, commit.host)
                return commit
        if arriving is not None and arriving.recent:
            log.warning("relay: message %s of an interrupted attempt reached Postfix's "
                        "cleanup as %s (%s's log) and qmgr has not taken it in yet: "
                        "trying again in %d s, not sending it", message,
                        arriving.at.queue_id, arriving.at.host, LOG_RECHECK.total_seconds())
            return Undecided("open_receipt")
        if commit is None:
            log.info("relay: Postfix's log shows no queue file committed for message %s "
                     "after an interrupted attempt", message)
            return None
        log.warning("relay: an attempt to relay message %s was interrupted after Postfix "
                    "queued it as %s: not sending it again (read in %s's log)", message,
                    commit.queue_id, commit.host)
        return commit

    async def _finished(self, message: uuid.UUID, arriving: Opened) -> Commit | None:
        """The commit of ``message``, when this host's queue lists a finished file under
        its open receipt's queue id and the receipt is still open once the log is read
        past the listing (another message's first line would have voided it: the id
        reused); or when qmgr logged it meanwhile. None: the queue does not tell."""
        assert self._maillog is not None  # noqa: S101 - only asked with a log
        if self._queue is None or arriving.at.host != self._maillog.host:
            return None
        if not await self._queue.lists(arriving.at.queue_id):
            return None
        try:
            async with asyncio.timeout(LOG_WAIT_SECONDS):
                await self._maillog.read_past(time.monotonic())
        except TimeoutError:
            return None
        async with pooled(self._pool) as conn:
            commit = await committed(conn, message)
            still = None if commit is not None else await opened(conn, message)
        if commit is not None:
            return commit
        return arriving.at if still is not None and still.at == arriving.at else None

    async def _logs_behind(self, row: Claimed, maillog: MaillogFollower) -> bool:
        """Whether a log that may show ``row``'s interrupted attempt has not been read to
        its end since the row was first looked at (by this process)."""
        now = time.monotonic()
        # Rows settled by another instance meanwhile would stay: dropped once long past.
        self._waiting = {k: v for k, v in self._waiting.items()
                         if k == row.id or now - v.since < 2 * LOG_LAG_LIMIT}
        waiting = self._waiting.get(row.id)
        if waiting is None:
            waiting = self._waiting[row.id] = _Waiting(await self._pool.fetchval(NEXT_READ),
                                                       now)
        return bool(await self._pool.fetchval(
            LOGS_BEHIND, waiting.read, row.attempt_log, row.attempt_by, maillog.key,
            f"{maillog.host}:", dt.timedelta(seconds=LOG_LAG_LIMIT)))

    def _unread_for(self, message: uuid.UUID) -> Undecided | None:
        """A log not read to its end since ``message`` was first looked at: Undecided,
        looked at again soon until LOG_WAIT_SECONDS have passed, then as held up by a
        log behind until LOG_LAG_LIMIT more have; then None (decided without the log)."""
        waiting = self._waiting[message]
        now = time.monotonic()
        if now - waiting.since < LOG_WAIT_SECONDS:
            return Undecided(None, READ_RECHECK)
        if waiting.behind is None:
            waiting.behind = now
        if now - waiting.behind < LOG_LAG_LIMIT:
            log.warning("relay: the maillog follower (of the host the attempt went to, or "
                        "when not known, this host's or another's that read lately) has not "
                        "read to the end of the log (for %d s): whether Postfix queued "
                        "message %s in an interrupted attempt is unknown, trying again in "
                        "%d s", now - waiting.behind, message, LOG_RECHECK.total_seconds())
            return Undecided("log_behind")
        log.error("relay: the maillog follower has not read to the end of the log for "
                  "%d s: deciding message %s of an interrupted attempt without it (sent "
                  "again while attempts remain, else failed); Postfix may hold a copy",
                  now - waiting.behind, message)
        return None
