"""Reading sent messages and managing the suppression list."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, fields
from typing import Any

import asyncpg

from postwarden_admin_api.cursors import Cursor, scope
from postwarden_admin_api.sqlwhere import Where

# As the outbound_messages and outbound_recipients tables' CHECKs allow.
QUEUE_ID = re.compile(r"[0-9A-Za-z]+")  # a Postfix queue id, as its log writes one
MESSAGE_STATUSES = ("queued", "relayed", "untracked", "delivered", "partially_delivered",
                    "failed")
RECIPIENT_STATUSES = ("queued", "relayed", "delivered", "deferred", "bounced", "failed")
MESSAGE_COLUMNS = """id, key_id, message_id, sender, subject, recipient_count, size, tags,
    metadata, status, queue_id, attempts, last_error, created_at, updated_at"""
# A sender key sees the messages of its rotation line: every key with its owner.
SELECT_MESSAGE = f"""
SELECT {MESSAGE_COLUMNS} FROM outbound_messages
WHERE id = $1 AND ($2::text IS NULL OR key_id IN (SELECT key_id FROM api_keys WHERE owner = $2))
"""  # noqa: S608 - a constant
SELECT_RECIPIENTS = """
SELECT address, kind, status, detail, updated_at FROM outbound_recipients
WHERE message_id = $1 ORDER BY address
"""
# time: when the event was recorded; logged_at: when Postfix logged the line it comes
# from (NULL for the relay's own events, and for lines read before migration 0033).
SELECT_EVENTS = """
SELECT id, time, recipient, event, detail, logged_at FROM outbound_events
WHERE message_id = $1 ORDER BY id
"""
# The search's filters (.sqlwhere), each with the index it uses: the recipients' and the
# sender's are migration 0037's.
SEARCH_FILTERS = {
    "owner": "key_id IN (SELECT key_id FROM api_keys WHERE owner = ${})",
    "status": "status = ${}",
    "sender": "lower(sender) = ${}",
    "recipient": "id IN (SELECT message_id FROM outbound_recipients WHERE lower(address) = ${})",
    # 0047's GIN index of tagged messages. A tag's messages may be most (walk newest
    # first) or few (the index): only a plan made for the tag knows which, as every
    # search's is (audit_queries.reading).
    "tag": "tags <> '{{}}' AND tags @> ARRAY[${}]::text[]",
    "since": "created_at >= ${}",
    "until": "created_at < ${}",
    "queue_id": "queue_id = ${}",
}
# Our Message-ID names the message's id: the primary key finds it (_message_uuid).
SEARCH_MESSAGE_ID = "id = ${}::uuid AND message_id = ${}"
SEARCH_AFTER = "(created_at, id) < (${}, ${}::uuid)"
SUPPRESSION_COLUMNS = "address, reason, detail, created_at, created_by"
INSERT_SUPPRESSION = """
INSERT INTO suppressions (address, reason, detail, created_by) VALUES ($1, 'manual', $2, $3)
ON CONFLICT (address) DO NOTHING
RETURNING address, reason, detail, created_at, created_by
"""
SELECT_SUPPRESSION = f"SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE address = $1"  # noqa: S608
DELETE_SUPPRESSION = "DELETE FROM suppressions WHERE address = $1 RETURNING address"
MAX_SUPPRESSION_DETAIL = 500  # characters of a suppression's detail given by hand


# Our Message-ID names the message's id (build.new_message_id): the primary key finds it,
# with no index of its own to keep up at every write of a busy table.
_OUR_MESSAGE_ID = re.compile(r"<([0-9a-f]{32})@[^<>]+>")
_NO_MESSAGE = uuid.UUID(int=0)


def _message_uuid(message_id: str) -> uuid.UUID:
    """The id a Message-ID of ours names; for another, one no message has."""
    ours = _OUR_MESSAGE_ID.fullmatch(message_id)
    return uuid.UUID(ours.group(1)) if ours else _NO_MESSAGE


@dataclass(frozen=True, slots=True)
class MessageFilter:
    owner: str | None = None  # api_keys.owner, not a key id: a sender sees its rotation line's
    status: str | None = None
    sender: str | None = None  # Mailbox.key: lower-case, the domain in A-labels
    recipient: str | None = None  # Mailbox.key too
    tag: str | None = None
    message_id: str | None = None  # the Message-ID header, in its angle brackets
    queue_id: str | None = None  # Postfix's, as its log writes it
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    after: Cursor | None = None  # the last row seen
    limit: int = 50


SEARCH_ROUTE = "/api/v1/messages"


def search_scope(search: MessageFilter) -> str:
    """What a cursor of ``search`` pages (cursors.scope): its filters and owner, not
    the position or the page size."""
    return scope(SEARCH_ROUTE, {f.name: getattr(search, f.name) for f in fields(search)
                                if f.name not in ("after", "limit")})


def _message(row: asyncpg.Record) -> dict[str, Any]:
    shown = dict(row)
    shown["id"] = str(shown["id"])
    shown["from"] = shown.pop("sender")
    shown["tags"] = list(shown["tags"])
    return shown


async def get_message(
    conn: asyncpg.Connection, message_id: uuid.UUID, owner: str | None
) -> dict[str, Any] | None:
    """The message with its recipients, each with its own timeline, and message events;
    ``owner``: only that rotation line's (api_keys.owner, not a key id); None: any."""
    row = await conn.fetchrow(SELECT_MESSAGE, message_id, owner)
    if row is None:
        return None
    shown = _message(row)
    events = [dict(e) for e in await conn.fetch(SELECT_EVENTS, message_id)]
    shown["recipients"] = [
        dict(recipient) | {"timeline": _timeline(recipient["address"], events)}
        for recipient in await conn.fetch(SELECT_RECIPIENTS, message_id)
    ]
    shown["events"] = [_shown(e) for e in events if e["recipient"] is None]
    return shown


def _timeline(address: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipient's own events, and the message's ``relayed`` (its time, and Postfix's
    queue id as detail) once Postfix took it: the relay writes that event once for the
    message (one send.queued), and a recipient Postfix refused at RCPT has its
    ``failed`` before it. Without it a relayed recipient's timeline stayed empty until
    Postfix's log told more."""
    address = address.lower()
    timeline: list[dict[str, Any]] = []
    for event in events:
        own = (event["recipient"] or "").lower() == address
        taken = (event["recipient"] is None and event["event"] == "relayed"
                 and all(e["event"] != "failed" for e in timeline))
        if own or taken:
            timeline.append(_shown(event))
    return timeline


def _shown(event: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry: the event without the columns that placed it."""
    return {k: v for k, v in event.items() if k not in ("id", "recipient")}


def search_sql(search: MessageFilter) -> tuple[str, list[Any]]:
    """The statement and parameters of one page of ``search``, and one row more: a cursor
    only when a row follows, so a client never turns to an empty last page."""
    where = Where()
    for name, fragment in SEARCH_FILTERS.items():
        if (value := getattr(search, name)) is not None:
            where.add(fragment, value)
    if search.message_id is not None:
        where.add(SEARCH_MESSAGE_ID, _message_uuid(search.message_id), search.message_id)
    if search.after is not None:
        where.add(SEARCH_AFTER, search.after.time, search.after.id)
    limit = where.parameter(search.limit + 1)
    sql = (f"SELECT {MESSAGE_COLUMNS} FROM outbound_messages{where} "  # noqa: S608 - constants
           f"ORDER BY created_at DESC, id DESC LIMIT {limit}")
    return sql, where.params


async def search_messages(
    conn: asyncpg.Connection, search: MessageFilter
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor of the next page (None at the end)."""
    sql, params = search_sql(search)
    rows = await conn.fetch(sql, *params)
    page = rows[:search.limit]
    cursor = None
    if len(rows) > search.limit:
        cursor = Cursor(page[-1]["created_at"], page[-1]["id"], search_scope(search)).encode()
    return [_message(row) for row in page], cursor


def suppressions_sql(after: str | None, reason: str | None, limit: int
                     ) -> tuple[str, list[Any]]:
    """The statement and parameters of a page by address, and one row more (is there a
    next page?)."""
    where = Where()
    if after is not None:
        where.add("address > ${}", after)
    if reason is not None:
        where.add("reason = ${}", reason)
    sql = (f"SELECT {SUPPRESSION_COLUMNS} FROM suppressions{where} "  # noqa: S608 - constants
           f"ORDER BY address LIMIT {where.parameter(limit + 1)}")
    return sql, where.params


async def list_suppressions(
    conn: asyncpg.Connection, after: str | None, reason: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page by address, and the ``after`` of the next page (None at the end)."""
    sql, params = suppressions_sql(after, reason, limit)
    rows = await conn.fetch(sql, *params)
    page = [dict(row) for row in rows[:limit]]
    return page, page[-1]["address"] if len(rows) > limit else None


async def add_suppression(
    conn: asyncpg.Connection, address: str, detail: str | None, created_by: str
) -> tuple[dict[str, Any], bool]:
    """(the entry, whether it is new)."""
    row = await conn.fetchrow(INSERT_SUPPRESSION, address, detail, created_by)
    if row is not None:
        return dict(row), True
    return dict(await conn.fetchrow(SELECT_SUPPRESSION, address)), False


async def delete_suppression(conn: asyncpg.Connection, address: str) -> bool:
    return await conn.fetchval(DELETE_SUPPRESSION, address) is not None
