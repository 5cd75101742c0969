"""The failed-authentication block stops guessing, not the keys' owners: behind a
TLS reverse proxy on the same host every client is 127.0.0.1 (as the test client
is), so a stranger's wrong keys blocked every application's valid key (429, the
send API down). A key this process verified before passes a blocked address; one
it has not verified yet is not checked while the block lasts (no guessing)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key, revoke_key, split_key
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, bearer, settings_for

pytestmark = pytest.mark.postgres

LIMIT = 3


async def _mint(database_url: str, role: Role) -> str:
    conn = await connect(database_url)
    try:
        return await create_key(conn, role, f"block-{role}")
    finally:
        await conn.close()


async def _client(aiohttp_client: AiohttpClient, database_url: str) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(
        settings_for(database_url, auth_failures_per_minute=LIMIT, development_key=True)))


async def _block(client: TestClient[Any, Any]) -> None:
    """A stranger's wrong keys, until the client address is blocked."""
    statuses = []
    for i in range(LIMIT + 1):
        response = await client.get("/api/v1/stats", headers=bearer(f"pw_{i:016x}_guess"))
        statuses.append(response.status)
    assert statuses[-1] == 429, statuses


async def _code(response: Any) -> str:
    code: str = (await response.json())["error"]["code"]
    return code


async def test_a_blocked_address_admits_a_key_verified_before(
    aiohttp_client: AiohttpClient, fresh_database_url: str,
) -> None:
    client = await _client(aiohttp_client, fresh_database_url)
    key = await _mint(fresh_database_url, Role.AUDITOR)
    assert (await client.get("/api/v1/stats", headers=bearer(key))).status == 200
    await _block(client)

    admitted = await client.get("/api/v1/stats", headers=bearer(key))
    assert admitted.status == 200
    assert "RateLimit-Remaining" in admitted.headers  # counted against the key as ever
    # Guessing stays closed: a wrong key, the fallback key, a valid key not verified yet.
    fresh = await _mint(fresh_database_url, Role.AUDITOR)
    for other in ("pw_00000000000000ff_guess", "dev-admin-key", fresh):
        refused = await client.get("/api/v1/stats", headers=bearer(other))
        assert refused.status == 429, other
        assert await _code(refused) == "rate_limited"


async def test_a_blocked_address_is_logged_once_by_its_address(
    aiohttp_client: AiohttpClient, fresh_database_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The block was counted (postwarden_api_rate_limited_total) and logged nowhere: an
    admin seeing the count rise could not tell who was guessing."""
    client = await _client(aiohttp_client, fresh_database_url)
    await _block(client)
    for i in range(3):  # guesses while blocked: refused before they are counted
        response = await client.get("/api/v1/stats", headers=bearer(f"pw_{i:016x}_again"))
        assert response.status == 429
    lines = [r.getMessage() for r in caplog.records if "failed authentications" in r.getMessage()]
    assert lines == [f"client 127.0.0.1 blocked until the minute ends: {LIMIT} failed "
                     "authentications in it"]


async def test_a_revoked_key_is_refused_at_a_blocked_address(
    aiohttp_client: AiohttpClient, fresh_database_url: str,
) -> None:
    client = await _client(aiohttp_client, fresh_database_url)
    key = await _mint(fresh_database_url, Role.AUDITOR)
    assert (await client.get("/api/v1/stats", headers=bearer(key))).status == 200
    await _block(client)
    parts = split_key(key)
    assert parts is not None
    conn = await connect(fresh_database_url)
    try:
        assert await revoke_key(conn, parts[0])
    finally:
        await conn.close()
    # Its memory is no pass: liveness is still checked on every request.
    refused = await client.get("/api/v1/stats", headers=bearer(key))
    assert refused.status == 429


async def test_a_block_another_instance_saw_does_not_refuse_a_valid_key(
    aiohttp_client: AiohttpClient, fresh_database_url: str,
) -> None:
    """The block is counted in Postgres: an instance that did not see it verifies the
    key, and a key it verified is admitted."""
    blocked_here = await _client(aiohttp_client, fresh_database_url)
    elsewhere = await _client(aiohttp_client, fresh_database_url)
    key = await _mint(fresh_database_url, Role.OPERATOR)
    await _block(blocked_here)
    assert (await elsewhere.get("/api/v1/stats", headers=bearer(key))).status == 200
