"""A message search and a suppressions page read only what they select, however PostgreSQL
caches their plans: each filter is a fragment of its own, and the address filters have
indexes (0037). A search for one recipient walked every message newest first (1 s at a
million, bench/send_queries.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.audit_queries import reading
from postwarden_admin_api.cursors import Cursor
from postwarden_admin_api.send.queries import (
    MessageFilter,
    search_messages,
    search_sql,
    suppressions_sql,
)
from postwarden_store import create_pool
from tests.fixtures.plans import generic_plan, planned, rows_read

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


@pytest.fixture
async def conn(fresh_database_url: str) -> Any:
    conn = await asyncpg.connect(fresh_database_url)
    await conn.execute(FILL, NOW, MESSAGES)
    await conn.execute(FILL_RECIPIENTS, MESSAGES)
    await conn.execute("ANALYZE outbound_messages, outbound_recipients")
    yield conn
    await conn.close()


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
    sql, params = search_sql(search)
    found = await conn.fetch(sql, *params)  # a page and one more, where there are
    plan = await generic_plan(conn, sql, params)
    assert len(found) == expected
    read = rows_read(plan, ("outbound_messages", "outbound_recipients"))
    assert read <= 2 * expected + 12, plan  # not thousands of messages


# Every message tagged "common", every 1000th "rare" too (4 of them).
TAGS = "UPDATE outbound_messages SET tags = CASE WHEN queue_id ~ '000$' " \
       "THEN '{common,rare}'::text[] ELSE '{common}' END"


@pytest.mark.parametrize(("tag", "expected"), [
    pytest.param("rare", 4, id="rare"), pytest.param("common", 6, id="common"),
    pytest.param("none", 0, id="none"), pytest.param("rar", 0, id="part-of-one"),
])
async def test_a_tag_search_reads_only_what_it_selects_however_often_it_runs(
    conn: asyncpg.Connection, fresh_database_url: str, tag: str, expected: int
) -> None:
    """A rare tag's search walked every message newest first: no index served it. Run
    as the route runs it (reading, which plans each search for its values: see
    tests/admin_api/test_audit.py for the generic plan it avoids), on one pooled
    connection, more often than PostgreSQL needs to consider a generic plan."""
    await conn.execute(TAGS)
    await conn.execute("ANALYZE outbound_messages")
    search = MessageFilter(tag=tag, limit=5)
    sql, params = search_sql(search)
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        for _ in range(8):
            async with reading(pool) as pooled:
                found, _ = await search_messages(pooled, search)
            assert len(found) == min(expected, 5)
            assert all(tag in message["tags"] for message in found)
    finally:
        await pool.close()
    plan = await planned(conn, sql, params, "force_custom_plan")
    assert rows_read(plan, ("outbound_messages",)) <= 2 * expected + 12, plan


async def test_a_suppressions_page_reads_only_its_rows(conn: asyncpg.Connection) -> None:
    """The page after the 3,000th address of 4,000: an index condition, not a filter over
    the 3,000 before it."""
    await conn.execute("INSERT INTO suppressions (address, reason) SELECT "
                       "'user' || lpad(i::text, 5, '0') || '@example.com', 'manual' "
                       "FROM generate_series(1, 4000) i")
    await conn.execute("ANALYZE suppressions")
    for reason in (None, "manual"):
        sql, params = suppressions_sql("user03000@example.com", reason, 10)
        page = await conn.fetch(sql, *params)
        plan = await generic_plan(conn, sql, params)
        assert [row["address"] for row in page] == [
            f"user{i:05d}@example.com" for i in range(3001, 3012)]
        assert rows_read(plan, ("suppressions",)) <= 11, plan
