"""Delivery tracking: follow Postfix's ``maillog_file`` and map queue ids to recipients.

Lines such as ``QID: to=<a@b>, relay=..., dsn=5.1.1, status=bounced (host ...
said: 550 5.1.1 ...)`` update that recipient of the message Postfix queued
as QID to ``delivered``, ``deferred`` or ``bounced`` with the (redacted)
remote reply; a hard bounce (5.x.x) adds the address to the suppression
list. The read position is kept in ``maillog_positions``, so a restart goes
on where it stopped; a rotated file (new inode, or shorter) is read from its
start. A line can arrive before the relay worker stored the queue id it
names, so unmatched lines are retried for ``PENDING_SECONDS``. Most lines
in a busy log are about other mail: each poll first asks, in one query,
which of its queue ids are ours, and only those lines are applied; the rest
wait without costing a transaction each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from postwarden_admin_api.periodic import DB_ERRORS

from .scrub import for_log, scrub_reply

log = logging.getLogger(__name__)

_DELIVERY = re.compile(
    r"\[\d+\]: (?P<queue_id>[0-9A-Za-z]+): to=<(?P<recipient>[^>]*)>,"
    r"(?P<fields>.*?) status=(?P<status>sent|deferred|bounced)(?: \((?P<reply>.*)\))?\s*$"
)
_DSN = re.compile(r"\bdsn=(\d\.\d{1,3}\.\d{1,3})")
STATUSES = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
POLL_SECONDS = 0.5
PENDING_SECONDS = 60.0
MAX_PENDING = 10_000
MAX_READ = 4 * 1024 * 1024

APPLY = """
WITH target AS (
    SELECT r.message_id, r.address FROM outbound_recipients r
    JOIN outbound_messages m ON m.id = r.message_id
    WHERE m.queue_id = $1 AND lower(r.address) = lower($2)
), updated AS (
    UPDATE outbound_recipients r SET status = $3, detail = $4, updated_at = now()
    FROM target t WHERE r.message_id = t.message_id AND r.address = t.address
    RETURNING r.message_id
), event AS (
    INSERT INTO outbound_events (message_id, recipient, event, detail)
    SELECT message_id, $2, $3, $4 FROM updated
)
SELECT message_id FROM updated
"""
# The message's status follows its recipients once none is still on its way.
SETTLE = """
UPDATE outbound_messages m SET status = s.status, updated_at = now()
FROM (
    SELECT CASE
        WHEN bool_and(status = 'delivered') THEN 'delivered'
        WHEN bool_and(status IN ('bounced', 'failed')) THEN 'failed'
        ELSE 'partially_delivered' END AS status
    FROM outbound_recipients WHERE message_id = $1
    HAVING bool_and(status IN ('delivered', 'bounced', 'failed'))
) s
WHERE m.id = $1 AND m.status <> s.status
"""
SUPPRESS = """
INSERT INTO suppressions (address, reason, detail) VALUES (lower($1), 'hard_bounce', $2)
ON CONFLICT (address) DO NOTHING
"""
OURS = "SELECT DISTINCT queue_id FROM outbound_messages WHERE queue_id = ANY($1::text[])"
SELECT_POSITION = "SELECT inode, position FROM maillog_positions WHERE path = $1"
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


def parse_line(line: str) -> DeliveryEvent | None:
    match = _DELIVERY.search(line)
    if match is None:
        return None
    dsn = _DSN.search(match["fields"])
    return DeliveryEvent(
        match["queue_id"], match["recipient"], STATUSES[match["status"]],
        dsn.group(1) if dsn else "", scrub_reply(match["reply"] or ""),
    )


async def apply_event(conn: asyncpg.Connection, event: DeliveryEvent) -> bool:
    """Record ``event``; False when no recipient of ours has its queue id (yet)."""
    async with conn.transaction():
        rows = await conn.fetch(
            APPLY, event.queue_id, event.recipient, event.status, event.reply or None
        )
        for row in rows:
            await conn.execute(SETTLE, row["message_id"])
        if rows and event.hard_bounce:
            await conn.execute(SUPPRESS, event.recipient, event.reply or None)
    if rows:
        log.info("%s: %s %s (%s)", event.queue_id, event.status,
                 for_log(event.recipient), for_log(event.reply))
    return bool(rows)


async def our_queue_ids(conn: asyncpg.Connection, queue_ids: set[str]) -> set[str]:
    """The ones among ``queue_ids`` that name a message of ours (one query)."""
    if not queue_ids:
        return set()
    return {row["queue_id"] for row in await conn.fetch(OURS, list(queue_ids))}


class MaillogFollower:
    def __init__(self, pool: asyncpg.Pool, path: Path) -> None:
        self._pool = pool
        self._path = path
        self._inode = 0
        self._position = 0
        self._partial = b""
        self._saved = -1
        self._pending: list[tuple[float, DeliveryEvent]] = []

    async def run(self) -> None:
        await self._load_position()
        while True:
            try:
                await self.poll()
            except DB_ERRORS:
                log.warning("maillog follower: cannot read %s or reach the database", self._path)
            await asyncio.sleep(POLL_SECONDS)

    async def _load_position(self) -> None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_POSITION, str(self._path))
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return
        if row is not None and row["inode"] == stat.st_ino and row["position"] <= stat.st_size:
            self._inode, self._position = stat.st_ino, row["position"]
        elif row is None:  # first start: earlier lines are not about our messages
            self._inode, self._position = stat.st_ino, stat.st_size

    def _read(self) -> bytes:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return b""
        if stat.st_ino != self._inode or stat.st_size < self._position:
            self._inode, self._position, self._partial = stat.st_ino, 0, b""
        if stat.st_size == self._position:
            return b""
        fd = os.open(self._path, os.O_RDONLY)
        try:
            os.lseek(fd, self._position, os.SEEK_SET)
            data = os.read(fd, MAX_READ)
        finally:
            os.close(fd)
        self._position += len(data)
        return data

    async def poll(self) -> None:
        """Read what was appended and apply it (plus lines still waiting for their queue id)."""
        data = self._partial + await asyncio.to_thread(self._read)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        now = time.monotonic()
        waiting = [(now, e) for line in lines
                   if (e := parse_line(line.decode("utf-8", "replace"))) is not None]
        queue, self._pending = self._pending + waiting, []
        async with self._pool.acquire() as conn:
            ours = await our_queue_ids(conn, {event.queue_id for _, event in queue})
            for seen, event in queue:
                applied = event.queue_id in ours and await apply_event(conn, event)
                if not applied and now - seen < PENDING_SECONDS:
                    self._pending.append((seen, event))
            self._pending = self._pending[-MAX_PENDING:]
            position = self._position - len(self._partial)
            if position != self._saved:
                await conn.execute(SAVE_POSITION, str(self._path), self._inode, position)
                self._saved = position
