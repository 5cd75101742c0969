"""A pooled connection lost while a request held it between two statements outside a
transaction (PostgreSQL restarting, its backend terminated): asyncpg hands the slot
back to the pool and the next statement raised InterfaceError ("released back to the
pool"), answered 500 internal_error with a traceback. It is 503 database_unavailable,
as the loss of a connection under a statement or in a transaction is.

A request awaits other work between its statements in the send API: with an
Idempotency-Key, the claim's connection is held while a large body is parsed and
built on a worker thread, then enqueued on; one lost meanwhile is given back and the
enqueue takes another (the claim was committed). The route below holds its connection
until the test has terminated its backend: no timing decides where the loss falls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiohttp import web

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL, Role, allow
from postwarden_admin_api.errors import connection
from postwarden_admin_api.send.sending import _Held
from postwarden_store import connect, create_pool
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

pytestmark = pytest.mark.postgres

# What the route awaits between its statements: the test's loss of its connection.
LOSE = web.AppKey[Callable[[asyncpg.Connection], Awaitable[None]]]("lose")


async def _terminated(database_url: str, pid: int) -> None:
    admin = await connect(database_url)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def _lose(conn: asyncpg.Connection, database_url: str) -> None:
    """Terminate ``conn``'s backend and wait until asyncpg has seen it gone."""
    gone = asyncio.Event()
    conn.add_termination_listener(lambda _: gone.set())
    await _terminated(database_url, conn.get_server_pid())
    async with asyncio.timeout(60):  # the test's bound: fails, not hangs
        await gone.wait()


@allow(Role.OPERATOR)
async def _two_statements(request: web.Request) -> web.Response:
    async with connection(request.app[POOL]) as conn:
        await conn.execute("SELECT 1")
        await request.app[LOSE](conn)
        await conn.execute("SELECT 2")
    return web.json_response({})


async def test_a_connection_lost_between_statements_is_503(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = await mint_key(Role.OPERATOR)
    app = create_app(settings_for(database_url))
    app[LOSE] = lambda conn: _lose(conn, database_url)
    app.router.add_get("/test/two-statements", _two_statements)
    client = await aiohttp_client(app)
    response = await client.get("/test/two-statements", headers=bearer(key))
    assert (response.status, (await response.json())["error"]["code"]) == (
        503, "database_unavailable")
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


async def test_the_send_apis_held_connection_lost_is_taken_again(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    held = _Held(pool)
    try:
        first = await held.get()
        await _lose(first, database_url)
        assert await (await held.get()).fetchval("SELECT 1") == 1
    finally:
        await held.give_back()
        await pool.close()
