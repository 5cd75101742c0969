"""A pooled connection lost in a transaction (PostgreSQL restarting, the backend
terminated) while nothing ran on it: asyncpg's exit from the transaction raised
InterfaceError ("the underlying connection is closed"), which says a mistake in the
code, not the database gone (the admin service answered 500, not 503). It raises
ConnectionDoesNotExistError, as a statement under way when the connection is lost
does; the transaction was not committed."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postwarden_store import connect, create_pool

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("then", ["a statement", "the commit"])
async def test_a_connection_lost_in_a_transaction_ends_it_as_lost(
    database_url: str, then: str,
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    admin = await connect(database_url)
    try:
        with pytest.raises(asyncpg.ConnectionDoesNotExistError):
            async with pool.acquire() as conn, conn.transaction():
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _: lost.set())
                await admin.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
                async with asyncio.timeout(60):  # the test's bound: fails, not hangs
                    await lost.wait()
                if then == "a statement":
                    await conn.execute("SELECT 1")
        assert await pool.fetchval("SELECT 1") == 1  # on a new connection
    finally:
        await admin.close()
        await pool.close()
