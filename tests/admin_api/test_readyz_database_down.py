"""docs/api.md: ``/readyz`` answers 503 while the database is unreachable, and 200
again once it is back; ``/healthz`` (the process is up) stays 200 meanwhile; other
routes answer 503 ``database_unavailable``.

Postgres is stopped for real: a cluster of this test's own, so that the
session's cluster, shared by every other test, is never disturbed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key
from postwarden_store import connect, migrate_database
from tests.fixtures.adminapp import AiohttpClient, bearer, settings_for
from tests.fixtures.postgres import PostgresCluster, running_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    with running_cluster() as cluster:
        asyncio.run(migrate_database(cluster.admin_dsn))
        yield cluster


async def _readyz(client: TestClient[Any, Any]) -> tuple[int, Any]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def test_readyz_follows_the_database_going_away_and_coming_back(
    aiohttp_client: AiohttpClient, own_cluster: PostgresCluster
) -> None:
    client = await aiohttp_client(create_app(settings_for(own_cluster.admin_dsn)))
    assert await _readyz(client) == (200, {"status": "ready"})

    await asyncio.to_thread(own_cluster.stop)
    assert not own_cluster.is_running()
    assert await _readyz(client) == (
        503, {"status": "unready", "problem": "database unreachable"})
    assert (await client.get("/healthz")).status == 200

    await asyncio.to_thread(own_cluster.start)
    # The pool drops the connections the stop broke as it meets them: a few answers may
    # still be 503, none once a fresh connection is made.
    deadline = time.monotonic() + 30
    answer = await _readyz(client)
    while answer[0] != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        answer = await _readyz(client)
    assert answer == (200, {"status": "ready"})


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/audit"), ("GET", "/api/v1/keys"), ("POST", "/api/v1/suppressions")])
async def test_a_route_answers_503_database_unavailable_while_the_database_is_away(
    aiohttp_client: AiohttpClient, own_cluster: PostgresCluster, method: str, path: str,
) -> None:
    conn = await connect(own_cluster.admin_dsn)
    try:
        key = await create_key(conn, Role.ADMIN, "admin")
    finally:
        await conn.close()
    client = await aiohttp_client(create_app(settings_for(own_cluster.admin_dsn)))
    # Served once (the key verified, the pool's connection made), then the database goes.
    assert (await client.get("/api/v1/keys", headers=bearer(key))).status == 200
    await asyncio.to_thread(own_cluster.stop)
    for _ in range(2):  # the connection the stop broke, then a fresh one refused
        response = await client.request(method, path, headers=bearer(key),
                                        json={"address": "a@example.com"})
        assert response.status == 503, await response.text()
        assert (await response.json())["error"]["code"] == "database_unavailable"
        assert response.headers["Retry-After"] == "5"
