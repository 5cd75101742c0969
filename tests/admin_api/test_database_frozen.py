"""A database that stops answering on the connections the pool already holds (a server
frozen, a network partition dropping packets) hung every request using one for ever:
asyncpg waited without limit for a statement's answer, and TCP gives such a connection
up only after many minutes. Each statement now waits ``COMMAND_TIMEOUT`` (here made
short) and the request is 503 ``database_unavailable``; ``/readyz`` says the database is
unreachable. Once the database answers again, so does the service, without a restart.
A TCP relay on loopback stands for the network (.dbrelay)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import app as app_module
from postwarden_admin_api import errors
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.errors import connection
from postwarden_admin_api.periodic import pooled
from postwarden_admin_api.revisions import POLICY_LOCK_KEY
from postwarden_admin_api.send.sending import _Held
from postwarden_store import connect, create_pool
from tests.admin_api.test_database_lost_mid_transaction import (
    assert_503_once_frozen_in_its_lock_wait,
)
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for
from tests.fixtures.dbrelay import Relay, relayed
from tests.webhooks.receiver import wait_for_async

pytestmark = pytest.mark.postgres

# The test's own bound on an answer: a hung request fails the test instead of hanging it.
ANSWER_WITHIN = aiohttp.ClientTimeout(total=60)
SEND = {"from": "app@example.com", "to": ["someone@example.com"], "subject": "s", "text": "t"}


async def _ask(client: TestClient[Any, Any], key: str, method: str, path: str
               ) -> tuple[int, Any, str | None]:
    answer = await client.request(method, path, headers=bearer(key), timeout=ANSWER_WITHIN,
                                  json=SEND if method == "POST" else None)
    return answer.status, await answer.json(), answer.headers.get("Retry-After")


@asynccontextmanager
async def relayed_client(aiohttp_client: AiohttpClient, database_url: str, **settings: Any
                         ) -> AsyncIterator[tuple[Relay, TestClient[Any, Any]]]:
    """The service (``settings`` its own) on a database reached through a relay
    (.dbrelay); stopped, its pool closed, with the relay thawed before the relay closes:
    what it began on the frozen database (a cancel request, a reconnect to its pool's
    floor) ends while the test's loop runs, not at the loop's end, where a socket still
    open is a ResourceWarning, which fails the suite."""
    async with relayed(database_url) as (relay, through):
        client = await aiohttp_client(create_app(settings_for(through, **settings)))
        try:
            yield relay, client
        finally:
            relay.thaw()
            await client.close()


def full_pool_client(aiohttp_client: AiohttpClient, database_url: str
                     ) -> AbstractAsyncContextManager[tuple[Relay, TestClient[Any, Any]]]:
    """:func:`relayed_client` with its pool's 20 connections open before any freeze,
    more than its workers take: the step a test asks about gets one of them, where a
    new one would wait for its connect."""
    return relayed_client(aiohttp_client, database_url, pool_min_size=20, pool_max_size=20)


@pytest.mark.parametrize("route", [
    ("GET", "/api/v1/audit"), ("GET", "/api/v1/keys"), ("POST", "/api/v1/send-email")])
async def test_a_request_on_a_frozen_database_is_503_then_served_once_it_answers(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    monkeypatch: pytest.MonkeyPatch, route: tuple[str, str],
) -> None:
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    key = await mint_key(Role.ADMIN, allowed_senders=["app@example.com"])
    async with relayed_client(aiohttp_client, database_url, pool_min_size=1,
                              pool_max_size=4) as (relay, client):
        assert (await _ask(client, key, "GET", "/api/v1/keys"))[0] == 200
        relay.freeze()
        status, body, retry_after = await _ask(client, key, *route)
        assert (status, body["error"]["code"], retry_after) == (
            503, "database_unavailable", "5")
        relay.thaw()
        assert (await _ask(client, key, "GET", "/api/v1/keys"))[0] == 200


async def test_readyz_says_a_frozen_database_is_unreachable(
    aiohttp_client: AiohttpClient, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    async with full_pool_client(aiohttp_client, database_url) as (relay, client):
        relay.freeze()
        answer = await client.get("/readyz", timeout=ANSWER_WITHIN)
        assert (answer.status, await answer.json()) == (
            503, {"status": "unready", "problem": "database unreachable"})
        assert (await client.get("/healthz", timeout=ANSWER_WITHIN)).status == 200
        relay.thaw()
        answer = await client.get("/readyz", timeout=ANSWER_WITHIN)
        assert (answer.status, await answer.json()) == (200, {"status": "ready"})


async def test_healthz_answers_while_the_database_is_frozen(
    aiohttp_client: AiohttpClient, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every request re-reads the runtime settings every 2 s, /healthz's too: on a frozen
    database that read waited the statements' whole timeout (here made endless), and the
    liveness probe with it, where the last known settings do."""
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 3600.0)
    async with full_pool_client(aiohttp_client, database_url) as (relay, client):
        assert (await client.get("/healthz", timeout=ANSWER_WITHIN)).status == 200
        relay.freeze()
        await asyncio.sleep(2.5)  # past the settings' 2 s: this request re-reads them
        assert (await client.get("/healthz", timeout=ANSWER_WITHIN)).status == 200


async def test_metrics_answers_while_the_database_is_frozen(
    aiohttp_client: AiohttpClient, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scrape counts the webhook backlog within 2 s, else gives NaN: on a frozen
    database it waited, once its count was given up, for the count's cancel, which the
    server never acknowledges, the statements' whole timeout more (here made endless)."""
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 3600.0)
    async with full_pool_client(aiohttp_client, database_url) as (relay, client):
        relay.freeze()
        answer = await client.get("/metrics", timeout=ANSWER_WITHIN)
        assert answer.status == 200
        assert "postwarden_webhook_pending NaN" in await answer.text()


async def test_leaving_the_relay_closes_its_sockets(database_url: str) -> None:
    """Every socket of the relay's, a connection carried to the database and one held
    while frozen (a cancel request's), is closed once ``relayed`` is left, not left to
    the loop: a test ended right after (the pooled-statement tests below) left them to
    the loop's end, where one still open is a ResourceWarning, which fails the suite."""
    async with relayed(database_url) as (relay, through):
        carried = await connect(through)
        relay.freeze()
        parts = urlsplit(through)
        _, waiting = await asyncio.open_connection(parts.hostname, parts.port)

        async def both_taken() -> bool:  # the carried one's two ends, the held one's
            return relay.open_sockets() == 3

        assert await wait_for_async(both_taken)
    try:
        assert relay.open_sockets() == 0
    finally:
        carried.terminate()
        waiting.close()
        await waiting.wait_closed()


@asynccontextmanager
async def held(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A send's connection (send.sending._Held), as its Idempotency-Key claim uses it."""
    holding = _Held(pool)
    try:
        async with holding.using() as conn:
            yield conn
    finally:
        await holding.give_back()


@pytest.mark.parametrize("taking", [pooled, connection, held])
async def test_a_pooled_statement_without_answer_ends_its_connection(
    database_url: str, monkeypatch: pytest.MonkeyPatch,
    taking: Callable[[asyncpg.Pool], AbstractAsyncContextManager[asyncpg.Connection]],
) -> None:
    """A background loop's round or a start-up step (periodic.pooled) whose statement got
    no answer ended only once the frozen server acknowledged asyncpg's cancel of it, which
    it never does, after the pool's whole command timeout (COMMAND_TIMEOUT: 80 s in all);
    a request's (errors.connection, a send's held connection) after its ACQUIRE_TIMEOUT
    more (45 s). Each ends with its statement, its connection terminated. Here the
    statement's own timeout is short, the pool's and the acquire's endless, to tell the
    waits apart."""
    monkeypatch.setattr(errors, "ACQUIRE_TIMEOUT", 3600.0)
    async with relayed(database_url) as (relay, through):
        pool = await create_pool(through, min_size=0, max_size=1, command_timeout=3600.0)

        async def frozen_round() -> None:
            async with taking(pool) as conn:
                await conn.execute("SELECT 1")
                relay.freeze()
                await conn.execute("SELECT 2", timeout=1.0)

        round_ = asyncio.create_task(frozen_round())
        try:
            await asyncio.wait({round_}, timeout=30)  # the test's bound: fails, not hangs
            assert round_.done()
            assert isinstance(round_.exception(), TimeoutError)
        finally:
            round_.cancel()
            relay.thaw()
            await pool.close()


async def test_a_wait_for_a_deletes_lock_on_a_frozen_database_is_503(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A policy change waits for the policy lock as long as a webhook delete may hold it
    (row_wait_seconds: webhook_timeout_seconds, here an hour, and 70 s), past the
    statements' command timeout: a database frozen meanwhile was told only at its end.
    A probe on another connection now finds it silent, and the change is 503. The
    lock is held here by a session the freeze does not reach, as a delete's would."""
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    key = await mint_key(Role.OPERATOR)
    holder = await connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", POLICY_LOCK_KEY)
        async with relayed_client(aiohttp_client, database_url,
                                  webhook_timeout_seconds=3600.0) as (relay, client):
            asking = asyncio.create_task(client.post(
                "/api/v1/rules", headers=bearer(key), timeout=ANSWER_WITHIN,
                json={"rule": {"name": "r", "when": {"sender": ["r@evil.test"]},
                               "then": "reject"}}))
            await assert_503_once_frozen_in_its_lock_wait(holder, relay, asking)
    finally:
        await holder.close()


async def test_a_send_whose_key_claim_gets_no_answer_is_503(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A send with an Idempotency-Key whose claim, its first statement, gets no answer is
    503 database_unavailable, as one without a key is at its enqueue (the first test):
    the database freezes once the request is admitted (its 100 Continue), as its body
    comes in. That the claim's connection ends with its statement, not after asyncpg's
    wait for the cancel (bounded here by the same short timeout, so this would pass
    without), is the ``held`` case of the test above."""
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    key = await mint_key(Role.ADMIN, allowed_senders=["app@example.com"])
    async with full_pool_client(aiohttp_client, database_url) as (relay, client):
        admitted: list[bool] = []

        async def body_once_admitted() -> AsyncIterator[bytes]:
            admitted.append(True)
            relay.freeze()
            yield json.dumps(SEND).encode()

        answer = await client.post(
            "/api/v1/send-email", data=body_once_admitted(), expect100=True,
            headers={**bearer(key), "Idempotency-Key": "frozen-claim",
                     "Content-Type": "application/json"},
            timeout=ANSWER_WITHIN)
        # Admitted: the 503 is the frozen claim's, not a slow start's (every statement
        # has the short timeout) before the database froze.
        assert (admitted, answer.status, (await answer.json())["error"]["code"]) == (
            [True], 503, "database_unavailable")
    # The attempt's line says what the client was answered, not an internal error.
    assert "outcome=refused error=database_unavailable" in caplog.text
