"""An enqueue whose connection failed, confirmed on another, on real Postgres: the answer
is definite only once the backend that ran the call can no longer commit."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from postwarden_admin_api.errors import lost
from postwarden_admin_api.send.outbox import (
    ENQUEUE,
    Accepted,
    OutcomeUnknown,
    Unconfirmed,
    confirm,
    enqueue,
)
from postwarden_store import connect, create_pool
from tests.conftest import PgServer
from tests.fixtures.dbrelay import relayed
from tests.fixtures.postgres import durable_commits_hang
from tests.fixtures.submissions import ROOMY, submission
from tests.send_api.test_outbox_limits import waiting_on

RUNNING = "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)"
IN_OUTBOX = "SELECT count(*) FROM outbox WHERE message_id = $1"


async def test_a_backend_still_running_the_call_is_ended_before_the_answer(
    database_url: str, pg_server: PgServer
) -> None:
    """The connection breaks on the service's side while its backend waits for the key's
    counters. Looking on another connection then finds nothing, but the backend would go
    on and commit: the relay would send what the client was answered a 500 for, and a
    client that retries without an Idempotency-Key would send it twice."""
    key = f"held-{uuid.uuid4().hex[:8]}"
    holder, first, other = [await connect(database_url) for _ in range(3)]
    backend = first.get_server_pid()
    lost = submission(key, "b@example.org")
    try:
        async with holder.transaction():  # the key's counters stay locked meanwhile
            await enqueue(holder, submission(key, "a@example.org"), ROOMY)
            send = asyncio.create_task(enqueue(first, lost, ROOMY))
            await waiting_on(pg_server.admin_dsn, first, ENQUEUE, "transactionid")
            first.terminate()  # only the client's end: the backend still waits
            with pytest.raises(Unconfirmed) as unsure:
                await send
            with pytest.raises(asyncpg.ConnectionDoesNotExistError):
                await confirm(other, unsure.value)
            assert not await other.fetchval(RUNNING, backend)
        # The counters are free: a backend still in the call would commit now, then leave.
        for _ in range(500):
            if not await other.fetchval(RUNNING, backend):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"backend {backend} still there after 10 s")
        assert await other.fetchval(IN_OUTBOX, lost.id) == 0
    finally:
        for conn in (holder, other):
            await conn.close()


async def test_a_backend_cut_off_while_waiting_for_the_disk_is_ended_and_its_message_kept(
    database_url: str, pg_server: PgServer
) -> None:
    """The call's first transaction committed the message; its second waits for the disk
    when the connection breaks on the service's side. Ending that backend keeps the
    commit: the message is accepted (202), flushed on the other connection."""
    first, other = await connect(database_url), await connect(database_url)
    backend = first.get_server_pid()
    try:
        await first.execute("SET synchronous_commit = on")  # other's flush does not wait
        async with durable_commits_hang(pg_server.admin_dsn):
            send = asyncio.create_task(enqueue(
                first, submission(uuid.uuid4().hex, "a@example.org"), ROOMY))
            await waiting_on(pg_server.admin_dsn, first, ENQUEUE)
            first.terminate()
            with pytest.raises(Unconfirmed) as unsure:
                await send
            accepted = await confirm(other, unsure.value)
            assert not await other.fetchval(RUNNING, backend)
        assert accepted == unsure.value.accepted
        assert await other.fetchval(IN_OUTBOX, accepted.id) == 1
    finally:
        await other.close()


async def test_a_pooled_connection_left_unsure_is_not_handed_on(
    database_url: str, pg_server: PgServer
) -> None:
    """A server-side error (here a cancel, as from statement_timeout) leaves the
    connection open, but confirm() ends its backend: had it gone back to the pool, the
    next request there would have it cut off under its feet."""
    key = f"held-{uuid.uuid4().hex[:8]}"
    holder, other = await connect(database_url), await connect(database_url)
    one = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with holder.transaction():
            await enqueue(holder, submission(key, "a@example.org"), ROOMY)
            async with one.acquire() as conn:
                backend = conn.get_server_pid()
                send = asyncio.create_task(
                    enqueue(conn, submission(key, "b@example.org"), ROOMY))
                await waiting_on(pg_server.admin_dsn, conn, ENQUEUE, "transactionid")
                await other.execute("SELECT pg_cancel_backend($1)", backend)
                with pytest.raises(Unconfirmed) as unsure:
                    await send
            async with one.acquire() as conn:  # the next request on that pool, meanwhile
                with pytest.raises(asyncpg.QueryCanceledError):
                    await confirm(other, unsure.value)
                assert await conn.fetchval("SELECT pg_backend_pid()") != backend
    finally:
        await one.close()
        for conn in (holder, other):
            await conn.close()


async def test_a_database_silent_to_the_look_leaves_the_outcome_unknown(
    database_url: str,
) -> None:
    """The database stops answering (frozen, a partition) as confirm() looks for the
    message: its statement's command timeout is no answer on whether the message was
    stored. Raised as such it was a 503 database_unavailable, whose Retry-After has a
    client send the message again; OutcomeUnknown is a 500. Its connection is ended: given
    back, it waited for the look's cancel, which the server never acknowledges, a
    command timeout more (COMMAND_TIMEOUT, 40 s) before the 500."""
    unsure = Unconfirmed(Accepted(uuid.uuid4(), "<lost@example.com>"))
    async with relayed(database_url) as (relay, through):
        pool = await create_pool(through, min_size=1, max_size=1, command_timeout=1.0)
        try:
            async with pool.acquire() as conn:
                relay.freeze()
                with pytest.raises(OutcomeUnknown):
                    async with asyncio.timeout(60):  # the test's own bound
                        await confirm(conn, unsure)
                assert lost(conn)  # ended: released, as asyncpg does a closed one
        finally:
            relay.thaw()
            await pool.close()
