"""An audit batch commits once it is on disk, whatever the server's synchronous_commit:
the milter no longer spools a batch the store said was written, and a commit that did
not wait for the WAL flush is lost in a crash. Durable commits are made to hang here
(durable_commits_hang): a batch that waits for the disk is seen waiting (SyncRep)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postwarden_store import connect, write_audit_batch
from postwarden_store.audit import Written
from tests.conftest import PgServer
from tests.fixtures.postgres import durable_commits_hang
from tests.store.test_audit import make_event

pytestmark = pytest.mark.postgres


async def _wait_event(admin_dsn: str, conn: asyncpg.Connection) -> str | None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        event: str | None = await admin.fetchval(
            "SELECT wait_event FROM pg_stat_activity WHERE pid = $1", conn.get_server_pid())
        return event
    finally:
        await admin.close()


async def test_a_batch_waits_for_the_disk_on_a_session_that_would_not(
    database_url: str, pg_server: PgServer
) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute("SET synchronous_commit = off")  # the tests' server has it off too
        async with durable_commits_hang(pg_server.admin_dsn):
            write = asyncio.create_task(write_audit_batch(conn, [make_event()]))
            async with asyncio.timeout(10):
                while await _wait_event(pg_server.admin_dsn, conn) != "SyncRep":
                    assert not write.done(), "the batch committed without waiting for the disk"
                    await asyncio.sleep(0.02)
        # Released as the hang ends: the commit stands, the session's setting is back.
        assert await asyncio.wait_for(write, 10) == Written(1, 0)
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
    finally:
        await conn.close()


async def test_local_is_kept(database_url: str, pg_server: PgServer) -> None:
    """``local`` waits for the local flush and for no standby: not made ``on``, which
    would wait for a synchronous standby the DBA chose not to wait for."""
    conn = await connect(database_url)
    try:
        await conn.execute("SET synchronous_commit = local")
        async with durable_commits_hang(pg_server.admin_dsn):
            assert await asyncio.wait_for(write_audit_batch(conn, [make_event()]), 10) \
                == Written(1, 0)
    finally:
        await conn.close()
