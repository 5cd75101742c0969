"""A change of ``recipient_hash_key`` reaches every running instance: two apps, one database.

Instance A takes the change through its settings API; instance B only sees the
database, through its runtime-settings cache (re-read every 2 s).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL
from postwarden_admin_api.send.limits import derive_hash_key, recipient_hash
from tests.fixtures.adminapp import AiohttpClient, bearer
from tests.fixtures.scripted_smtp import Scripted

from .conftest import Client, SetRuntime, body

PER_RECIPIENT = 2
OTHER_SECRET_KEY = "22" * 32  # an instance configured with another secret_key
MakeInstance = Callable[..., Awaitable[Client]]


@pytest.fixture
async def instance(
    client: Client, aiohttp_client: AiohttpClient, smtp_server: tuple[Scripted, int],
    make_admin_settings: Callable[..., Any], set_runtime: SetRuntime,
) -> AsyncIterator[MakeInstance]:
    """Another instance beside ``client`` (A), on the same database and relay."""

    async def make(**overrides: Any) -> Client:
        settings = make_admin_settings(relay_host="127.0.0.1", relay_port=smtp_server[1],
                                       relay_backoff_seconds=0.05, **overrides)
        return await aiohttp_client(create_app(settings))

    await set_runtime(outbound_per_recipient_per_day=PER_RECIPIENT)
    try:
        yield make
    finally:
        await set_runtime(outbound_per_recipient_per_day=None, recipient_hash_key=None)


def address() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.org"


async def send(instance: Client, sender: dict[str, str], to: str) -> tuple[int, str | None]:
    response = await instance.post("/api/v1/send-email", json=body(to=[to]), headers=sender)
    answer = await response.json()
    return response.status, answer.get("error", {}).get("code")


async def change_key(instance: Client, admin: dict[str, str], secret: str | None) -> None:
    response = await instance.put("/api/v1/settings", headers=admin,
                                  json={"recipient_hash_key": secret})
    assert response.status == 200, await response.text()


async def counted(pool: asyncpg.Pool, key: bytes, to: str) -> int:
    """Today's count of ``to`` under ``key``, as the per-recipient table holds it."""
    value: int = await pool.fetchval(
        "SELECT coalesce(sum(count), 0) FROM outbound_rate_counters "
        "WHERE scope = 'recipient_day' AND subject = $1", recipient_hash(key, to))
    return value


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition``; the timeout, far past the 2 s cache, only stops a hung test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while not await condition():
        assert loop.time() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def test_every_instance_counts_a_recipient_under_the_changed_key(
    client: Client, instance: MakeInstance, sender: dict[str, str], admin_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pool = client.app[POOL]
    b = await instance()
    admin = bearer(admin_key)
    stored: bytes = await pool.fetchval("SELECT key FROM send_hash_key")
    secrets = ("first-recipient-hash-secret", "second-recipient-hash-secret")
    recipient = address()
    # unset -> set, set -> changed, set -> unset (back to the key kept in the database)
    for secret, key in [*((s, derive_hash_key(s.encode())) for s in secrets), (None, stored)]:
        await change_key(client, admin, secret)
        assert await send(client, sender, recipient) == (202, None)
        assert await counted(pool, key, recipient) == 1  # A: at once

        async def b_uses_the_key(key: bytes = key) -> bool:
            probe = address()
            assert await send(b, sender, probe) == (202, None)
            return await counted(pool, key, probe) == 1

        await until(b_uses_the_key)
        assert await send(b, sender, recipient) == (202, None)
        assert await send(b, sender, recipient) == (429, "recipient_rate_limited")
        assert await send(client, sender, recipient) == (429, "recipient_rate_limited")
        assert await counted(pool, key, recipient) == PER_RECIPIENT
    assert all(secret not in caplog.text for secret in secrets)


async def test_an_instance_that_cannot_read_a_new_key_refuses_until_it_is_reverted(
    client: Client, instance: MakeInstance, sender: dict[str, str], admin_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pool = client.app[POOL]
    b = await instance(secret_key=OTHER_SECRET_KEY)
    stored: bytes = await pool.fetchval("SELECT key FROM send_hash_key")
    assert await send(b, sender, address()) == (202, None)
    await change_key(client, bearer(admin_key), "readable-by-a-only")

    async def b_refuses() -> bool:
        return (await send(b, sender, address()))[0] == 503

    await until(b_refuses)
    assert await send(b, sender, address()) == (503, "hash_key_unreadable")
    assert await send(client, sender, address()) == (202, None)
    unreadable = [r for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert len(unreadable) == 1  # once per change, not once per refused send
    await change_key(client, bearer(admin_key), None)

    async def b_sends() -> bool:
        return (await send(b, sender, address()))[0] == 202

    await until(b_sends)
    recipient = address()
    assert await send(b, sender, recipient) == (202, None)
    assert await counted(pool, stored, recipient) == 1
    assert "readable-by-a-only" not in caplog.text
