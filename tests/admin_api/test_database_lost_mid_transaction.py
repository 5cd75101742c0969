"""A connection lost in a request's transaction (PostgreSQL restarting, the backend
terminated) was 500 internal_error, a traceback logged: asyncpg's exit from the
transaction raised InterfaceError ("the underlying connection is closed") in place of
the loss. It is 503 database_unavailable, as a connection lost outside one is.

The request waits for the policy lock, which the test holds, inside its transaction;
its backend is then terminated as a server shutting down terminates every one."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.revisions import POLICY_LOCK_KEY
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for
from tests.fixtures.dbrelay import Relay
from tests.webhooks.receiver import wait_for_async

pytestmark = pytest.mark.postgres

WAITING_FOR_A_LOCK = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""
RULE = {"name": "r", "when": {"sender": ["r@evil.test"]}, "then": "reject"}


async def assert_503_once_frozen_in_its_lock_wait(
    holder: asyncpg.Connection, relay: Relay, asking: asyncio.Task[aiohttp.ClientResponse],
) -> None:
    """``asking``'s request, once waiting for a lock ``holder`` holds, meets the database
    frozen (``relay``) and is answered 503 database_unavailable."""

    async def waiting() -> bool:
        return bool(await holder.fetch(WAITING_FOR_A_LOCK))

    assert await wait_for_async(waiting)
    relay.freeze()
    answer = await asking
    assert (answer.status, (await answer.json())["error"]["code"]) == (
        503, "database_unavailable")


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/revisions/1/activate", None), ("/api/v1/rules", {"rule": RULE})])
async def test_a_connection_lost_in_a_transaction_is_503(  # noqa: PLR0917 - fixtures
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey, path: str,
    body: dict[str, Any] | None, caplog: pytest.LogCaptureFixture,
) -> None:
    key = await mint_key(Role.OPERATOR)
    client = await aiohttp_client(create_app(settings_for(database_url)))
    holder = await connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", POLICY_LOCK_KEY)
        asking = asyncio.create_task(client.post(path, headers=bearer(key), json=body))

        async def waiting() -> bool:
            return bool(await holder.fetch(WAITING_FOR_A_LOCK))

        assert await wait_for_async(waiting)
        pid = await holder.fetchval(WAITING_FOR_A_LOCK)
        await holder.execute("SELECT pg_terminate_backend($1)", pid)
        response = await asking
        assert (response.status, (await response.json())["error"]["code"]) == (
            503, "database_unavailable")
        assert not [r for r in caplog.records if r.exc_info]  # no traceback
    finally:
        await holder.close()
