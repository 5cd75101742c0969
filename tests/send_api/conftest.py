"""Fixtures of the send API tests: the admin app, runtime settings, a pool, an SMTP server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.runtime_settings import apply_changes
from postwarden_admin_api.secrets import Keyring
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect, create_pool
from tests.fixtures.adminapp import (  # noqa: F401 - fixtures
    AiohttpClient,
    MintKey,
    admin_client,
    admin_key,
    admin_settings,
    bearer,
    fresh_outages,
    make_admin_settings,
    mint_key,
)
from tests.fixtures.scripted_smtp import Scripted, smtp_server  # noqa: F401 - fixture

SetRuntime = Callable[..., Awaitable[None]]
Client = TestClient[Any, Any]


@pytest.fixture
def set_runtime(database_url: str) -> SetRuntime:
    """Store runtime settings in the module database (apps re-read them within 2 s,
    or at once after ``app[RUNTIME].invalidate()``)."""

    async def apply(**changes: Any) -> None:
        conn = await connect(database_url)
        try:
            await apply_changes(conn, Keyring(None), changes, "tests")
        finally:
            await conn.close()

    return apply


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module database, large enough for the 100-request limit tests."""
    pool = await create_pool(database_url, min_size=1, max_size=30)
    try:
        yield pool
    finally:
        await pool.close()


def body(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "from": "App <app@example.com>", "to": [f"{uuid.uuid4().hex[:10]}@example.org"],
        "subject": "Hello", "text": "Hi there",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


async def relayed(server: tuple[Scripted, int], message_id: str) -> bytes:
    """The message of ``message_id`` as the relay sent it to the SMTP server: read from
    the outbox, it is gone once the relay came first (the row is deleted once sent)."""
    handler, _ = server
    for _ in range(600):
        sent = [data for _, _, data in handler.received if message_id.encode() in data]
        if sent:
            return sent[0]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{message_id} was not relayed")


@pytest.fixture
async def client(
    # First, so it stops last: an SMTP server stopped while the app's relay still holds
    # a connection to it leaves that connection's transport to be garbage-collected,
    # and the ResourceWarning fails whichever test is running then.
    smtp_server: tuple[Scripted, int],  # noqa: F811 - the imported fixture
    aiohttp_client: AiohttpClient,
    make_admin_settings: Callable[..., ServiceSettings],  # noqa: F811 - the imported fixture
    set_runtime: SetRuntime,
) -> Client:
    await set_runtime(allowed_sender_addresses=["*@example.com"], outbound_enabled=True,
                      outbound_per_key_per_minute=1000)
    settings = make_admin_settings(relay_host="127.0.0.1", relay_port=smtp_server[1],
                                   relay_backoff_seconds=0.05)
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def sender(mint_key: MintKey) -> dict[str, str]:  # noqa: F811 - the imported fixture
    return bearer(await mint_key(Role.SENDER, ["app@example.com", "*@example.com"]))


@pytest.fixture
def on_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions the service hands to ``asyncio.to_thread``, in order:
    to tell work done off the event loop from work done on it."""
    names: list[str] = []
    to_thread = asyncio.to_thread

    async def recording(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__name__", repr(func)))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", recording)
    return names
