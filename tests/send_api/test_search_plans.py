"""A message search reads only what its filters select, however PostgreSQL caches its plan:
each filter is a fragment of its own, and the address filters have indexes (0037). A
search for one recipient walked every message newest first (0.7 s at a million)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.cursors import Cursor
from postwarden_admin_api.send.queries import MessageFilter, search_sql

pytestmark = pytest.mark.postgres
MESSAGES = 4000
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
FILL = """
INSERT INTO outbound_messages (id, key_id, message_id, sender, subject, recipient_count, size,
    queue_id, created_at)
SELECT md5(i::text)::uuid, 'k', '<' || md5(i::text) || '@example.com>',
       'App' || (i % 40) || '@Example.com', 's', 1, 1, 'Q' || i,
       $1::timestamptz - i * interval '1 minute'
FROM generate_series(1, $2) i;
"""
FILL_RECIPIENTS = """
INSERT INTO outbound_recipients (message_id, address, kind)
SELECT md5(i::text)::uuid, 'User' || i || '@Customer.test', 'to' FROM generate_series(1, $1) i
"""


def _id(i: int) -> uuid.UUID:
    """The id FILL gives message ``i``."""
    return uuid.UUID(hashlib.md5(str(i).encode()).hexdigest())  # noqa: S324 - as FILL's md5()


def _rows_read(node: dict[str, Any]) -> Iterator[int]:
    """Rows each scan of the two tables read (returned or filtered out), over all its loops."""
    if node.get("Relation Name") in ("outbound_messages", "outbound_recipients"):
        read = int(node["Actual Rows"]) + int(node.get("Rows Removed by Filter", 0))
        yield read * int(node.get("Actual Loops", 1))
    for child in node.get("Plans", []):
        yield from _rows_read(child)


@pytest.fixture
async def conn(fresh_database_url: str) -> Any:
    conn = await asyncpg.connect(fresh_database_url)
    await conn.execute(FILL, NOW, MESSAGES)
    await conn.execute(FILL_RECIPIENTS, MESSAGES)
    await conn.execute("ANALYZE outbound_messages, outbound_recipients")
    yield conn
    await conn.close()


def _literal(value: object) -> str:
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'::timestamptz"
    return "'" + str(value).replace("'", "''") + "'" if not isinstance(value, int) else str(value)


async def _generic_plan(conn: asyncpg.Connection, search: MessageFilter
                        ) -> tuple[list[str], dict[str, Any]]:
    """The statement's message ids (a page and one more, where there are) and the plan
    PostgreSQL runs it by once it keeps one plan for every parameter
    (plan_cache_mode=force_generic_plan)."""
    sql, params = search_sql(search)
    found = [str(row["id"]) for row in await conn.fetch(sql, *params)]
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE page AS {sql}")
        plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page("
                                   + ", ".join(_literal(p) for p in params) + ")")
        await conn.execute("DEALLOCATE page")
    return found, json.loads(plan)[0]["Plan"]


@pytest.mark.parametrize(("search", "expected"), [
    pytest.param(MessageFilter(recipient="user1234@customer.test"), 1, id="recipient"),
    pytest.param(MessageFilter(recipient="nobody@customer.test"), 0, id="no-such-recipient"),
    pytest.param(MessageFilter(sender="nobody@example.com"), 0, id="no-such-sender"),
    pytest.param(MessageFilter(sender="app7@example.com", limit=5), 6, id="sender"),
    pytest.param(MessageFilter(queue_id="Q2345"), 1, id="queue-id"),
    pytest.param(MessageFilter(queue_id="NOSUCH"), 0, id="no-such-queue-id"),
    pytest.param(MessageFilter(until=NOW - dt.timedelta(minutes=3990)), 10, id="until"),
    pytest.param(MessageFilter(since=NOW - dt.timedelta(minutes=5.5)), 5, id="since"),
    pytest.param(MessageFilter(after=Cursor(NOW - dt.timedelta(minutes=100), _id(100)), limit=3),
                 4, id="cursor"),
])
async def test_a_search_reads_only_what_it_selects(
    conn: asyncpg.Connection, search: MessageFilter, expected: int
) -> None:
    found, plan = await _generic_plan(conn, search)
    assert len(found) == expected
    assert sum(_rows_read(plan)) <= 2 * expected + 12, plan  # not thousands of messages
