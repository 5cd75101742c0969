"""A client that leaves while its search, export or stats query runs: the query is
cancelled in PostgreSQL, not left to run to its statement timeout (30 s).

The slow query is a real one: another session holds the searched table locked, so the
query waits in PostgreSQL as a long scan would. The service runs as in production
(httpserver.start), whose connection handling tells a handler the client left."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey

pytestmark = pytest.mark.postgres
DEADLINE = 10.0  # seconds the test waits for the query to start, or to end
WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE state = 'active' AND wait_event_type = 'Lock' AND query LIKE $1
"""



async def _waiting(watcher: asyncpg.Connection, table: str, present: bool) -> bool:
    """Whether a query on ``table`` comes to wait (``present``), or stops waiting, in
    DEADLINE seconds."""
    async with asyncio.timeout(DEADLINE):
        for _ in range(int(DEADLINE / 0.05)):
            if bool(await watcher.fetchval(WAITING, f"%FROM {table}%")) == present:
                return True
            await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("search", [
    pytest.param(("/api/v1/audit?queue_id=Q1", "audit_events"), id="audit-search"),
    pytest.param(("/api/v1/audit/export?queue_id=Q1", "audit_events"), id="audit-export"),
    pytest.param(("/api/v1/stats", "audit_events"), id="stats"),
    pytest.param(("/api/v1/admin-audit", "admin_audit"), id="admin-audit"),
    pytest.param(("/api/v1/messages?tag=t", "outbound_messages"), id="message-search"),
])
async def test_a_query_ends_when_its_client_leaves(
    served_port: int, mint_key: MintKey, database_url: str, search: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, table = search  # what is asked for, and the table its query waits on
    caplog.set_level(logging.INFO, logger="postwarden_admin_api")
    key = await mint_key(Role.AUDITOR)
    watcher = await connect(database_url)
    blocker = await connect(database_url)
    try:
        await blocker.execute(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        _, writer = await asyncio.open_connection("127.0.0.1", served_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n"
                     f"Authorization: Bearer {key}\r\n\r\n".encode())
        await writer.drain()
        assert await _waiting(watcher, table, present=True)
        writer.close()  # the client gives up
        await writer.wait_closed()
        assert await _waiting(watcher, table, present=False)
    finally:
        await blocker.close()
        await watcher.close()
    # One line saying so, no traceback; the pooled connection is back for the next.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
            and r.name.startswith("postwarden")][-1].startswith("the client left while GET")
    async with asyncio.timeout(DEADLINE):
        reader, writer = await asyncio.open_connection("127.0.0.1", served_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     f"Authorization: Bearer {key}\r\n\r\n".encode())
        assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
        writer.close()
