"""The development fallback key, turned on (``development_key``): loopback socket peers
only, and only while no API key exists. Off by default: tests/admin_api/test_dev_key_opt_in.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler

from postwarden_admin_api.app import create_app
from postwarden_admin_api.auth import is_loopback_peer
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key, revoke_key, split_key
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, bearer, settings_for

DEV = bearer("dev-admin-key")


@pytest.mark.parametrize(("peername", "loopback"), [
    pytest.param(("127.0.0.1", 4000), True, id="ipv4-loopback"),
    pytest.param(("127.9.8.7", 4000), True, id="ipv4-loopback-range"),
    pytest.param(("::1", 4000, 0, 0), True, id="ipv6-loopback"),
    pytest.param(("::ffff:127.0.0.1", 4000, 0, 0), True, id="ipv4-mapped-loopback"),
    pytest.param(("192.0.2.7", 4000), False, id="ipv4-remote"),
    pytest.param(("10.0.0.1", 4000), False, id="ipv4-private"),
    pytest.param(("2001:db8::1", 4000, 0, 0), False, id="ipv6-remote"),
    pytest.param(("::ffff:192.0.2.7", 4000, 0, 0), False, id="ipv4-mapped-remote"),
    pytest.param(("localhost", 4000), False, id="name-not-address"),
    pytest.param(None, False, id="no-peer"),
    pytest.param("/run/socket", False, id="unix-socket"),
])
def test_loopback_peer_check(peername: object, loopback: bool) -> None:
    assert is_loopback_peer(peername) is loopback


def _peer_as(address: str) -> Callable[..., Any]:
    """An outermost test middleware that makes the socket report another peer address."""

    @web.middleware
    async def fake_peer(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        real = transport.get_extra_info

        def get_extra_info(name: str, default: Any = None) -> Any:
            return (address, 40000) if name == "peername" else real(name, default)

        transport.get_extra_info = get_extra_info  # type: ignore[method-assign]
        return await handler(request)

    return fake_peer


async def _client(aiohttp_client: AiohttpClient, url: str, peer: str | None
                  ) -> TestClient[Any, Any]:
    app = create_app(settings_for(url, development_key=True))
    if peer is not None:
        app.middlewares.insert(0, _peer_as(peer))
    return await aiohttp_client(app)


async def test_fallback_works_from_loopback_with_a_warning(
    aiohttp_client: AiohttpClient, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await _client(aiohttp_client, fresh_database_url, None)
    with caplog.at_level(logging.WARNING, logger="postwarden_admin_api.auth"):
        for _ in range(2):
            response = await client.get("/api/v1/keys", headers=DEV)
            assert response.status == 200
    warnings = [r for r in caplog.records if "development fallback key used" in r.getMessage()]
    assert len(warnings) == 2


async def test_fallback_refused_from_a_non_loopback_peer(
    aiohttp_client: AiohttpClient, fresh_database_url: str
) -> None:
    client = await _client(aiohttp_client, fresh_database_url, "192.0.2.7")
    response = await client.get("/api/v1/keys", headers={
        **DEV, "X-Forwarded-For": "127.0.0.1", "Host": "localhost",
    })
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("role", list(Role))
async def test_fallback_stops_once_any_key_exists(
    aiohttp_client: AiohttpClient, fresh_database_url: str, role: Role
) -> None:
    client = await _client(aiohttp_client, fresh_database_url, None)
    assert (await client.get("/api/v1/keys", headers=DEV)).status == 200
    conn = await connect(fresh_database_url)
    try:
        await create_key(conn, role, "first", ["app@example.com"] if role == Role.SENDER else [])
    finally:
        await conn.close()
    assert (await client.get("/api/v1/keys", headers=DEV)).status == 401


async def test_application_keys_made_first_close_it_behind_a_same_host_proxy(
    aiohttp_client: AiohttpClient, fresh_database_url: str
) -> None:
    """Behind a TLS proxy on the same host every client is 127.0.0.1 (as the test
    client is): with only sender and operator keys made, nobody may mint an admin."""
    conn = await connect(fresh_database_url)
    try:
        await create_key(conn, Role.SENDER, "app", ["app@example.com"])
        await create_key(conn, Role.OPERATOR, "ops")
    finally:
        await conn.close()
    client = await _client(aiohttp_client, fresh_database_url, None)
    response = await client.post("/api/v1/keys", headers=DEV,
                                 json={"role": "admin", "name": "mine"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_revoking_every_key_does_not_bring_it_back(
    aiohttp_client: AiohttpClient, fresh_database_url: str
) -> None:
    conn = await connect(fresh_database_url)
    try:
        parts = split_key(await create_key(conn, Role.OPERATOR, "only"))
        assert parts is not None
        assert await revoke_key(conn, parts[0])
    finally:
        await conn.close()
    client = await _client(aiohttp_client, fresh_database_url, None)
    assert (await client.get("/api/v1/keys", headers=DEV)).status == 401
