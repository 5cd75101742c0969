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
- the follower has not read the log to its end within :data:`LOG_WAIT_SECONDS`:
  until it has held a row up for :data:`LOG_LAG_LIMIT` (per process), then the
  row is decided as without a log, at ERROR, since an outage of the log must not
  keep mail back for good.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

import asyncpg

from .maillog import MaillogFollower
from .receipts import Commit, committed, taking_in

log = logging.getLogger(__name__)

LOG_WAIT_SECONDS = 60.0  # for the follower to read the log to its end
LOG_RECHECK = dt.timedelta(seconds=10)  # a row the log cannot settle yet is claimed again
LOG_LAG_LIMIT = 1800.0


@dataclass(frozen=True, slots=True)
class Undecided:
    """Postfix's log cannot tell yet whether an interrupted attempt's message was queued."""


class InterruptedAttempts:
    """The log's answers about interrupted attempts, for one relay worker."""

    def __init__(self, pool: asyncpg.Pool, maillog: MaillogFollower | None) -> None:
        self._pool = pool
        self._maillog = maillog
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
        except TimeoutError:
            return self._log_behind_for(message)
        self._log_behind.pop(message, None)
        async with self._pool.acquire() as conn:
            commit = await committed(conn, message)
            arriving = None if commit is not None else await taking_in(conn, message)
        if arriving is not None:
            log.warning("relay: message %s of an interrupted attempt reached Postfix's "
                        "cleanup as %s (%s's log) and qmgr has not taken it in yet: "
                        "trying again in %d s, not sending it", message, arriving.queue_id,
                        arriving.host, LOG_RECHECK.total_seconds())
            return Undecided()
        if commit is None:
            log.info("relay: Postfix's log shows no queue file committed for message %s "
                     "after an interrupted attempt", message)
            return None
        log.warning("relay: an attempt to relay message %s was interrupted after Postfix "
                    "queued it as %s: not sending it again (read in %s's log)", message,
                    commit.queue_id, commit.host)
        return commit

    def _log_behind_for(self, message: uuid.UUID) -> Undecided | None:
        """A follower that did not read the log to its end in time: Undecided until it
        has held ``message`` up for LOG_LAG_LIMIT, then None (decided without the log)."""
        now = time.monotonic()
        # Rows settled by another instance meanwhile would stay: dropped once long past.
        self._log_behind = {k: v for k, v in self._log_behind.items()
                            if now - v < 2 * LOG_LAG_LIMIT}
        since = self._log_behind.setdefault(message, now)
        if now - since < LOG_LAG_LIMIT:
            log.warning("relay: the maillog follower has not read to the end of the log "
                        "(for %d s): whether Postfix queued message %s in an interrupted "
                        "attempt is unknown, trying again in %d s", now - since, message,
                        LOG_RECHECK.total_seconds())
            return Undecided()
        del self._log_behind[message]
        log.error("relay: the maillog follower has not read to the end of the log for "
                  "%d s: deciding message %s of an interrupted attempt without it (sent "
                  "again while attempts remain, else failed); Postfix may hold a copy",
                  now - since, message)
        return None
