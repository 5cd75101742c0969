"""What Postfix's log says of an interrupted attempt: its message queued, not queued,
or not known yet.

A relay attempt is interrupted when its outcome was never stored (the service
died) or its answer never came (the connection dropped after the message went
out). Before sending such a message again, the relay asks the log follower's
receipts (:mod:`.receipts`). While the log cannot tell yet, the answer is
:class:`Undecided` and the row is put off (:data:`LOG_RECHECK`), costing no
attempt and sending nothing:

- cleanup took the message in and the queue manager has yet to log it (a
  backlogged qmgr), for as long as :mod:`.receipts` counts such a receipt open;
  no log line tells a finished incoming file from one an aborted transfer left,
  so where Postfix's queue can be listed (:class:`PostfixQueue`), a file listed
  there under the receipt's queue id is the commit, however late qmgr is;
- the follower has not read the log to its end within :data:`LOG_WAIT_SECONDS`,
  nor has every other host's that read its log within :data:`LOG_LAG_LIMIT` (the
  attempt may have been made there, through that host's Postfix, whose log only
  that host reads): until it has held a row up for :data:`LOG_LAG_LIMIT` (per
  process), then the row is decided as without a log, at ERROR, since an outage
  of the log must not keep mail back for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from postwarden_admin_api.periodic import DB_ERRORS

from .maillog import NEXT_READ, POLL_SECONDS, MaillogFollower
from .receipts import Commit, Opened, committed, opened
from .scrub import for_log

log = logging.getLogger(__name__)

LOG_WAIT_SECONDS = 60.0  # for the follower to read the log to its end
LOG_RECHECK = dt.timedelta(seconds=10)  # a row the log cannot settle yet is claimed again
LOG_LAG_LIMIT = 1800.0
POSTQUEUE_SECONDS = 30.0
# Other hosts' log readers ($3: this host's keys' prefix) that read within $2 and have
# not read their log to its end since read number $1 was drawn. Rows without a leader
# are older versions', keyed by path alone.
OTHER_HOSTS_BEHIND = """
SELECT EXISTS (SELECT FROM maillog_positions
               WHERE NOT starts_with(path, $3) AND leader IS NOT NULL
                 AND updated_at > now() - $2::interval AND coalesce(read_to_end, 0) <= $1)
"""


@dataclass(frozen=True, slots=True)
class Undecided:
    """Postfix's log cannot tell yet whether an interrupted attempt's message was queued;
    ``reason`` (as the ``postwarden_relay_put_off`` metric counts it): ``open_receipt``,
    cleanup took it in and qmgr has yet to log it, or ``log_behind``, the follower has
    not read the log to its end."""

    reason: str


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
        # Rows held up by a follower behind: when each was first (monotonic).
        self._log_behind: dict[uuid.UUID, float] = {}

    async def queued(self, message: uuid.UUID) -> Commit | Undecided | None:
        """Where Postfix queued an interrupted attempt's message, when a log shows it;
        Undecided while the log may still show it; None when it shows it was not (or
        there is no log to ask)."""
        if self._maillog is None:
            log.warning("relay: an attempt to relay message %s was interrupted; without "
                        "maillog_path nothing tells whether Postfix queued it", message)
            return None
        try:
            async with asyncio.timeout(LOG_WAIT_SECONDS):
                await self._maillog.read_past(time.monotonic())
                await self._other_hosts_read(self._maillog.host)
        except TimeoutError:
            return self._log_behind_for(message)
        self._log_behind.pop(message, None)
        async with self._pool.acquire() as conn:
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
        async with self._pool.acquire() as conn:
            commit = await committed(conn, message)
            still = None if commit is not None else await opened(conn, message)
        if commit is not None:
            return commit
        return arriving.at if still is not None and still.at == arriving.at else None

    async def _other_hosts_read(self, host: str) -> None:
        """Return once every other host's log reader that read within LOG_LAG_LIMIT has
        read its log to its end since the call."""
        asked: int | None = None
        while True:
            with contextlib.suppress(*DB_ERRORS):  # asked again at the next round
                asked = asked or await self._pool.fetchval(NEXT_READ)
                if not await self._pool.fetchval(OTHER_HOSTS_BEHIND, asked,
                                                 dt.timedelta(seconds=LOG_LAG_LIMIT),
                                                 f"{host}:"):
                    return
            await asyncio.sleep(POLL_SECONDS)

    def _log_behind_for(self, message: uuid.UUID) -> Undecided | None:
        """A follower that did not read the log to its end in time: Undecided until it
        has held ``message`` up for LOG_LAG_LIMIT, then None (decided without the log)."""
        now = time.monotonic()
        # Rows settled by another instance meanwhile would stay: dropped once long past.
        self._log_behind = {k: v for k, v in self._log_behind.items()
                            if now - v < 2 * LOG_LAG_LIMIT}
        since = self._log_behind.setdefault(message, now)
        if now - since < LOG_LAG_LIMIT:
            log.warning("relay: the maillog follower (this host's, or another host's that "
                        "read lately) has not read to the end of the log (for %d s): whether "
                        "Postfix queued message %s in an interrupted attempt is unknown, "
                        "trying again in %d s", now - since, message,
                        LOG_RECHECK.total_seconds())
            return Undecided("log_behind")
        del self._log_behind[message]
        log.error("relay: the maillog follower has not read to the end of the log for "
                  "%d s: deciding message %s of an interrupted attempt without it (sent "
                  "again while attempts remain, else failed); Postfix may hold a copy",
                  now - since, message)
        return None
