"""Failed authentications count per client, and an IPv6 client is its /64: one host
holds a whole /64 and could take a fresh address for every guess, each with a fresh
``auth_failures_per_minute``. IPv4-mapped addresses count as their IPv4 address, and a
zone id (which names our own link) is no part of the client."""

from __future__ import annotations

import socket

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from postwarden_admin_api.app import create_app
from postwarden_admin_api.auth import address_group
from postwarden_store import connect
from tests.fixtures.adminapp import bearer, settings_for

pytestmark = pytest.mark.postgres

LIMIT = 3


@pytest.mark.parametrize(("one", "other"), [
    ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::2%eth1"),
])
def test_addresses_of_one_client_share_a_count(one: str, other: str) -> None:
    assert address_group(one) == address_group(other)


@pytest.mark.parametrize(("one", "other"), [
    ("2001:db8:1:2::1", "2001:db8:1:3::1"),
    ("192.0.2.7", "192.0.2.8"),
])
def test_other_clients_count_apart(one: str, other: str) -> None:
    assert address_group(one) != address_group(other)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
async def test_an_ipv6_client_is_blocked_by_its_64(database_url: str) -> None:
    app = create_app(settings_for(database_url, auth_failures_per_minute=LIMIT))
    server = TestServer(app, host="::1")
    await server.start_server()
    statuses = []
    try:
        async with ClientSession() as session:
            for i in range(LIMIT + 1):
                async with session.get(f"http://[::1]:{server.port}/api/v1/stats",
                                       headers=bearer(f"pw_{i:016x}_guess")) as response:
                    statuses.append(response.status)
    finally:
        await server.close()
    assert statuses == [401] * LIMIT + [429]
    conn = await connect(database_url)
    try:
        buckets = await conn.fetch(
            "SELECT bucket FROM rate_limit_counters WHERE bucket LIKE 'auth-failures:%'")
    finally:
        await conn.close()
    assert [row["bucket"] for row in buckets] == ["auth-failures:::/64"]
