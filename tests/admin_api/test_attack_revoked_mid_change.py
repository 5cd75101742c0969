"""A key revoked while its request's body still comes in changes nothing: it was checked
at the request's admission only, so a holder of a leaked admin key could open requests
before the revocation and finish them after it, minting a fresh admin key with the
revoked one. The change's admin log entry now holds the key (FOR SHARE) and finds it live
first, so a revocation also waits for a change already under way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

pytestmark = pytest.mark.postgres


Meanwhile = Callable[[asyncpg.Connection], Awaitable[object]]


async def _answer_to_a_slow_body(
    client: TestClient[Any, Any], database_url: str, key: str, *, method: str, path: str,
    payload: bytes, admitted: tuple[str, str], meanwhile: Meanwhile,
) -> tuple[int, dict[str, Any]]:
    """The answer to a request that ``meanwhile`` acts against once it is ``admitted``
    (a query and its parameter, true then), its body half sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n".encode() + payload[:5])
    await writer.drain()
    conn = await connect(database_url)
    try:
        # Admitted: the handler now waits for the rest of the body. Acting before the
        # admission would prove nothing.
        for _ in range(200):
            if await conn.fetchval(*admitted):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the request was not admitted within 10 s")
        await meanwhile(conn)
    finally:
        await conn.close()
    writer.write(payload[5:])
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


async def _send_with_the_key_revoked_mid_body(
    client: TestClient[Any, Any], database_url: str, key: str, *, method: str, path: str,
    payload: bytes,
) -> tuple[int, dict[str, Any]]:
    key_id = key.split("_")[1]

    async def revoke(conn: asyncpg.Connection) -> None:
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", key_id)

    # The admission marks the fresh key used.
    return await _answer_to_a_slow_body(
        client, database_url, key, method=method, path=path, payload=payload,
        admitted=("SELECT last_used_at IS NOT NULL FROM api_keys WHERE key_id = $1", key_id),
        meanwhile=revoke)


async def test_a_revoked_admin_key_mints_no_key_with_a_request_opened_before(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
) -> None:
    key = await mint_key(Role.ADMIN)
    payload = json.dumps({"role": "admin", "name": "minted after revocation"}).encode()
    status, body = await _send_with_the_key_revoked_mid_body(
        admin_client, database_url, key, method="POST", path="/api/v1/keys", payload=payload)
    assert (status, body.get("error", {}).get("code")) == (401, "unauthenticated")
    conn = await connect(database_url)
    try:
        assert not await conn.fetchval(
            "SELECT count(*) FROM api_keys WHERE name = 'minted after revocation'")
    finally:
        await conn.close()


async def test_a_revoked_operator_key_changes_no_setting_with_a_request_opened_before(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
) -> None:
    key = await mint_key(Role.OPERATOR)
    status, body = await _send_with_the_key_revoked_mid_body(
        admin_client, database_url, key, method="PUT", path="/api/v1/settings",
        payload=json.dumps({"outbound_max_recipients": 7}).encode())
    assert (status, body.get("error", {}).get("code")) == (401, "unauthenticated")


@pytest.mark.parametrize(("method", "path", "payload"), [
    pytest.param("DELETE", "/api/v1/keys/{}", None, id="revoke"),
    pytest.param("POST", "/api/v1/keys/{}/rotate", {"grace_seconds": 0}, id="rotate"),
])
async def test_an_admin_key_may_still_end_itself(
    admin_client: TestClient[Any, Any], mint_key: MintKey, method: str, path: str,
    payload: dict[str, Any] | None,
) -> None:
    key = await mint_key(Role.ADMIN)
    response = await admin_client.request(method, path.format(key.split("_")[1]),
                                          headers=bearer(key), json=payload)
    assert response.status in (200, 201), await response.text()


async def test_the_development_key_mints_no_key_once_the_first_exists(
    fresh_database_url: str, aiohttp_client: AiohttpClient,
) -> None:
    """Creating any key turns the development fallback key off for good, also for a
    request it opened before (a local account's, on a shared host)."""
    client = await aiohttp_client(create_app(settings_for(fresh_database_url,
                                                          development_key=True)))

    async def first_key(conn: asyncpg.Connection) -> None:
        await create_key(conn, Role.ADMIN, "the admin's first")

    status, body = await _answer_to_a_slow_body(
        client, fresh_database_url, "dev-admin-key", method="POST", path="/api/v1/keys",
        payload=json.dumps({"role": "admin", "name": "minted after"}).encode(),
        admitted=("SELECT EXISTS (SELECT FROM rate_limit_counters WHERE bucket = $1)",
                  "key:dev-fallback"),
        meanwhile=first_key)
    assert (status, body.get("error", {}).get("code")) == (401, "unauthenticated")
    conn = await connect(fresh_database_url)
    try:
        assert await conn.fetchval("SELECT array_agg(name) FROM api_keys") == [
            "the admin's first"]
    finally:
        await conn.close()


async def test_the_development_key_still_makes_the_first_key(
    fresh_database_url: str, aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_app(settings_for(fresh_database_url,
                                                          development_key=True)))
    response = await client.post("/api/v1/keys", headers=bearer("dev-admin-key"),
                                 json={"role": "admin", "name": "first"})
    assert response.status == 201, await response.text()
