"""A statement in a transaction that gets no answer in time (the database frozen, the
network dropping packets) ended with asyncpg's ROLLBACK, which first waits for its
cancel of the statement to be acknowledged: a silent server never does, so that waited
a whole command_timeout more (a frozen database's 503 came after 80 s, past the 60 s a
reverse proxy waits). The pool's transactions now terminate the connection instead.
Here asyncpg's cancel would wait for ever (no command_timeout): the statement's own
timeout alone ends the transaction. A TCP relay on loopback stands for the network."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postwarden_store import create_pool
from tests.fixtures.dbrelay import Relay, relayed

pytestmark = pytest.mark.postgres

# The test's own bound: a transaction left waiting fails the test instead of hanging it.
HANG_GUARD = 60.0


async def _statement_times_out_in_a_transaction(pool: asyncpg.Pool, relay: Relay) -> None:
    async with pool.acquire() as conn, conn.transaction():
        relay.freeze()
        await conn.execute("SELECT 1", timeout=0.5)


async def test_a_statement_timing_out_in_a_transaction_terminates_its_connection(
    database_url: str,
) -> None:
    async with relayed(database_url) as (relay, through):
        pool = await create_pool(through, min_size=1, max_size=1, command_timeout=None)
        try:
            ended = asyncio.create_task(_statement_times_out_in_a_transaction(pool, relay))
            await asyncio.wait({ended}, timeout=HANG_GUARD)
            assert ended.done(), "the transaction still waits for the statement's cancel"
            with pytest.raises(TimeoutError):
                ended.result()
            relay.thaw()
            assert await pool.fetchval("SELECT 1") == 1  # on a new connection
        finally:
            ended.cancel()
            pool.terminate()
