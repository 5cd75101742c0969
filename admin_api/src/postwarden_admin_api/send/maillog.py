"""Delivery tracking: follow Postfix's ``maillog_file`` and map queue ids to recipients.

Lines such as ``QID: to=<a@b>, relay=..., dsn=5.1.1, status=bounced (host ...
said: 550 5.1.1 ...)`` update that recipient of the message Postfix queued
as QID to ``delivered``, ``deferred`` or ``bounced`` with the (redacted)
remote reply; a hard bounce (5.x.x) adds the address to the suppression
list. The read position is kept in ``maillog_positions`` (per host), so a restart goes
on where it stopped; a rotated file is read to its end and the new one from
its start, and one emptied in place too (:mod:`.logtail`), also when the
rotation happened while the service was stopped (the old file is found by
its inode beside the log, unless it was compressed). A line can arrive
before the relay worker stored the queue id it names, so unmatched lines are
retried for ``PENDING_SECONDS``. Most lines in a busy log are about other
mail: each poll first asks, in one query, which of its queue ids are ours,
then applies those lines, in log order, in one statement (``maillog_apply``,
migration 0009); the rest wait. A poll whose database work fails keeps all
its lines for the next one. Lines about queue files (:mod:`.receipts`) are
handed over in the same poll, all of them; :meth:`MaillogFollower.read_past`
waits for a poll that started after a given moment to read to the end of
the log.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import surviving

from .logtail import LogTail
from .receipts import ReceiptLine, apply_receipts, parse_receipt, void_uncommitted
from .scrub import for_log, scrub_reply
from .syslogline import LogLine, split_line

log = logging.getLogger(__name__)

# Only a delivery agent's line counts (see .syslogline).
_AGENT = re.compile(r"\S*/(?:smtp|lmtp|local|virtual|pipe|error|retry|discard)")
_DELIVERY = re.compile(
    r"(?P<queue_id>[0-9A-Za-z]+): to=<(?P<recipient>[^>]*)>,"
    # Postfix's own fields, up to its status: never the reply's text, even when a
    # line cut short lacks the reply's closing parenthesis.
    r"(?P<fields>(?:(?! status=).)*) status=(?P<status>sent|deferred|bounced)"
    r"(?: \((?P<reply>.*?)\)?)?\s*$"
)
_DSN = re.compile(r"\bdsn=(\d\.\d{1,3}\.\d{1,3})")
STATUSES = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
POLL_SECONDS = 0.5
PENDING_SECONDS = 60.0
MAX_PENDING = 10_000
MAX_PENDING_RECEIPTS = 200_000  # about 20 MB of lines kept while Postgres is away
MAX_READ = 4 * 1024 * 1024

# Migration 0009: every line of a poll in one statement, applied in log order.
APPLY = "SELECT maillog_apply($1, $2, $3, $4, $5) AS line"
OURS = "SELECT DISTINCT queue_id FROM outbound_messages WHERE queue_id = ANY($1::text[])"
# Keyed by host and path: service instances on several hosts each follow their own
# Postfix's log, often at the same path. (Rows of older versions are keyed by path.)
SELECT_POSITION = """
SELECT inode, position FROM maillog_positions WHERE path = ANY($1::text[])
ORDER BY path = $1[1] DESC LIMIT 1
"""
SAVE_POSITION = """
INSERT INTO maillog_positions (path, inode, position) VALUES ($1, $2, $3)
ON CONFLICT (path) DO UPDATE SET inode = $2, position = $3, updated_at = now()
"""


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    queue_id: str
    recipient: str
    status: str  # delivered | deferred | bounced
    dsn: str
    reply: str

    @property
    def hard_bounce(self) -> bool:
        return self.status == "bounced" and self.dsn.startswith("5.")


def parse_line(line: LogLine) -> DeliveryEvent | None:
    if not _AGENT.fullmatch(line.program):
        return None
    match = _DELIVERY.match(line.text, line.start)
    if match is None:
        return None
    dsn = _DSN.search(match["fields"])
    return DeliveryEvent(
        match["queue_id"], match["recipient"], STATUSES[match["status"]],
        dsn.group(1) if dsn else "", scrub_reply(match["reply"] or ""),
    )


async def apply_events(conn: asyncpg.Connection, events: list[DeliveryEvent]) -> set[int]:
    """Record the events about messages of ours; the indexes of those that matched."""
    ours = await our_queue_ids(conn, {event.queue_id for event in events})
    mine = [(index, event) for index, event in enumerate(events) if event.queue_id in ours]
    if not mine:
        return set()
    rows = await conn.fetch(
        APPLY, [e.queue_id for _, e in mine], [e.recipient for _, e in mine],
        [e.status for _, e in mine], [e.reply or None for _, e in mine],
        [e.hard_bounce for _, e in mine],
    )
    applied = [mine[row["line"] - 1] for row in rows]
    for _, event in applied:
        # DEBUG: the message's timeline keeps it (GET /api/v1/messages/{id}).
        log.debug("%s: %s %s (%s)", event.queue_id, event.status,
                 for_log(event.recipient), for_log(event.reply))
    return {index for index, _ in applied}


def _renamed(path: Path, inode: int) -> Path | None:
    """The file beside ``path`` that is the file ``inode`` (``path`` renamed by a rotation)."""
    try:
        with os.scandir(path.parent) as entries:
            return next((Path(e.path) for e in entries
                         if e.is_file(follow_symlinks=False) and e.inode() == inode), None)
    except OSError:
        return None


async def our_queue_ids(conn: asyncpg.Connection, queue_ids: set[str]) -> set[str]:
    """The ones among ``queue_ids`` that name a message of ours (one query)."""
    if not queue_ids:
        return set()
    return {row["queue_id"] for row in await conn.fetch(OURS, list(queue_ids))}


class MaillogFollower:
    def __init__(self, pool: asyncpg.Pool, path: Path, metrics: Metrics | None = None) -> None:
        self._pool = pool
        self._path = path
        self._host = socket.gethostname()
        self._key = f"{self._host}:{path}"  # its row in maillog_positions
        self._deliveries = (metrics or Metrics()).deliveries
        self._tail = LogTail(path)
        self._partial = b""
        self._saved = -1
        self._pending: list[tuple[float, DeliveryEvent]] = []
        self._receipts: list[ReceiptLine] = []
        self._receipts_dropped = False
        self._read_to_end_at = -math.inf  # when the last poll that read to the end began
        self._progress = asyncio.Condition()

    async def run(self) -> None:
        started = False
        try:
            while True:
                with surviving("maillog follower"):
                    if not started:  # where it stopped: known once the database answers
                        await self._load_position()
                        started = True
                    await self.poll()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self._tail.close()

    async def _load_position(self) -> None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_POSITION, [self._key, str(self._path)])
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return
        if row is None:  # first start: earlier lines are not about our messages
            self._tail.resume(stat.st_ino, stat.st_size)
        elif row["inode"] == stat.st_ino and row["position"] <= stat.st_size:
            self._tail.resume(stat.st_ino, row["position"])
        elif row["inode"] != stat.st_ino:
            renamed = await asyncio.to_thread(_renamed, self._path, row["inode"])
            if renamed is None or not self._tail.resume_renamed(
                    renamed, row["inode"], row["position"]):
                log.warning("maillog follower: %s was rotated while the service was stopped "
                            "and the old file is gone from its directory (compressed?): its "
                            "last lines were not read", self._path)

    async def read_past(self, moment: float) -> None:
        """Return once a poll that began after ``moment`` (``time.monotonic()``) has
        read to the end of the log: every line written before then is applied."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._read_to_end_at > moment)

    async def poll(self) -> None:
        """Read what was appended and apply it (plus lines still waiting for their queue id)."""
        began = time.monotonic()
        appended, new_file = await asyncio.to_thread(self._tail.read, MAX_READ)
        if new_file:  # the old file's last line was cut short: it ends there
            self._partial = b""
        data = self._partial + appended
        lines = data.split(b"\n")
        self._partial = lines.pop()
        now = time.monotonic()
        postfix = [split for line in lines
                   if (split := split_line(line.decode("utf-8", "replace"))) is not None]
        waiting = [(now, e) for line in postfix if (e := parse_line(line)) is not None]
        queue = self._pending + waiting
        self._pending = queue[-MAX_PENDING:]  # until applied: a failure below loses no line
        self._receipts += [r for line in postfix if (r := parse_receipt(line))]
        if len(self._receipts) > MAX_PENDING_RECEIPTS:
            # Postgres has been away for long: a dropped line could let another
            # message's line commit a receipt of ours, so every uncommitted one goes.
            log.warning("maillog follower: dropping the %d oldest queue file lines waiting "
                        "for the database, and every receipt not yet committed",
                        len(self._receipts) - MAX_PENDING_RECEIPTS)
            self._receipts = self._receipts[-MAX_PENDING_RECEIPTS:]
            self._receipts_dropped = True
        async with self._pool.acquire() as conn:
            if self._receipts_dropped:
                await void_uncommitted(conn, self._host)
                self._receipts_dropped = False
            await apply_receipts(conn, self._host, self._receipts)
            self._receipts = []
            applied = await apply_events(conn, [event for _, event in queue])
            for index in applied:
                self._deliveries.labels(queue[index][1].status).inc()
            self._pending = [
                (seen, event) for index, (seen, event) in enumerate(queue)
                if index not in applied and now - seen < PENDING_SECONDS
            ][-MAX_PENDING:]
            position = self._tail.position - len(self._partial)
            if position != self._saved:
                await conn.execute(SAVE_POSITION, self._key, self._tail.inode, position)
                self._saved = position
        if len(appended) < MAX_READ and not new_file:
            async with self._progress:
                self._read_to_end_at = began
                self._progress.notify_all()
