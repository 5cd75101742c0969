"""Did Postfix queue a message whose relay attempt was cut off before its answer was stored?

The relay worker stores Postfix's 250 as soon as it arrives; a service that
dies in between (or stops while Postgres is away) leaves the outbox row
leased and unsettled, and sending it again when the lease ends would
deliver the message twice. Postfix's log tells: cleanup names each
message's Message-ID under its queue id (ours embed the outbox row's id,
see :func:`.build.new_message_id`), and qmgr's ``from=... (queue active)``,
or cleanup's hold or discard line, says the queue file was committed. The
maillog follower hands those lines to ``maillog_receipts`` (migration
0011), which keeps them for messages still in the outbox; before sending an
unsettled row again, the relay looks for a committed receipt and stores its
queue id instead.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import asyncpg

from .syslogline import split_line

_CLEANUP = re.compile(r"\S*/cleanup")
_QMGR = re.compile(r"\S*/qmgr")
_MESSAGE_ID = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): message-id=(?P<value>.*?)\s*")
_OURS = re.compile(r"<(?P<hex>[0-9a-f]{32})@[^<>\s]+>")
_HELD = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): (?:milter-)?(?:hold|discard): ")
_ACTIVE = re.compile(
    r"(?P<queue_id>[0-9A-Za-z]+): from=<.*>, size=\d+, nrcpt=\d+ \(queue active\)\s*"
)

APPLY = "SELECT maillog_receipts($1, $2, $3)"
COMMITTED = """
SELECT queue_id FROM relay_receipts WHERE message_id = $1 AND committed
ORDER BY seen_at DESC LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    queue_id: str
    message: uuid.UUID | None  # on a message-id line: the outbox id it names, if ours
    committed: bool  # a commit line (qmgr took the file in, cleanup held or discarded it)


def parse_receipt(line: str) -> ReceiptLine | None:
    split = split_line(line)
    if split is None:
        return None
    program, start = split
    if _CLEANUP.fullmatch(program):
        if (found := _MESSAGE_ID.fullmatch(line, start)) is not None:
            ours = _OURS.fullmatch(found["value"])
            return ReceiptLine(found["queue_id"], uuid.UUID(ours["hex"]) if ours else None,
                               committed=False)
        if (held := _HELD.match(line, start)) is not None:
            return ReceiptLine(held["queue_id"], None, committed=True)
    elif _QMGR.fullmatch(program) and (active := _ACTIVE.fullmatch(line, start)) is not None:
        return ReceiptLine(active["queue_id"], None, committed=True)
    return None


async def apply_receipts(conn: asyncpg.Connection, lines: list[ReceiptLine]) -> None:
    if lines:
        await conn.execute(APPLY, [r.queue_id for r in lines], [r.message for r in lines],
                           [r.committed for r in lines])


async def committed_queue_id(conn: asyncpg.Connection, message: uuid.UUID) -> str | None:
    """The queue id Postfix committed ``message`` under, as its log showed."""
    queue_id: str | None = await conn.fetchval(COMMITTED, message)
    return queue_id
