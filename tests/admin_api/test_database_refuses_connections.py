"""A server that refuses the service new connections while it runs (no slot left: too
many connections for its role or in all; a role or database gone) is the database
away, as one that does not answer: requests got 500 internal_error, a traceback
logged for each, and not the 503 database_unavailable (Retry-After) a client retries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.conftest import PgServer
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

pytestmark = pytest.mark.postgres
POOL_SIZE = 2


@pytest_asyncio.fixture
async def limited_role(database_url: str) -> AsyncIterator[str]:
    """A role that is no superuser (whose connection limit the server enforces), with
    the privileges of the one that owns the tables."""
    role = f"pwlimited_{uuid.uuid4().hex[:8]}"
    admin = await connect(database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN; GRANT postgres TO {role}")
        yield role
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE usename = $1", role)
        # What the service made as it (an audit partition, say) stays, as postgres's.
        await admin.execute(f"REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; "
                            f"DROP ROLE {role}")
    finally:
        await admin.close()


async def _refused_service(aiohttp_client: AiohttpClient, role: str, database_url: str,
                           pg_server: PgServer) -> TestClient[Any, Any]:
    """The service connecting as ``role``, then every connection of its dropped and none
    to be made again."""
    parts = urlsplit(database_url)
    url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    client = await aiohttp_client(create_app(settings_for(url, pool_max_size=POOL_SIZE)))
    admin = await connect(pg_server.admin_dsn)
    try:
        await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT 0")
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE usename = $1", role)
    finally:
        await admin.close()
    return client


async def test_no_connection_slot_left_is_503_database_unavailable(
        limited_role: str, aiohttp_client: AiohttpClient, mint_key: MintKey,
        database_url: str, pg_server: PgServer, *, caplog: pytest.LogCaptureFixture) -> None:
    key = await mint_key(Role.ADMIN)
    client = await _refused_service(aiohttp_client, limited_role, database_url, pg_server)
    caplog.clear()
    for _ in range(3 * POOL_SIZE):  # the first ones meet the pool's dropped connections
        answer = await client.get("/api/v1/stats", headers=bearer(key))
        assert answer.status == 503
        assert (await answer.json())["error"]["code"] == "database_unavailable"
        assert answer.headers["Retry-After"] == "5"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (f'database unreachable: TooManyConnectionsError: too many connections for role '
            f'"{limited_role}"') in caplog.text


async def test_readiness_says_why_the_database_is_unreachable(
        limited_role: str, aiohttp_client: AiohttpClient, database_url: str,
        pg_server: PgServer, *, caplog: pytest.LogCaptureFixture) -> None:
    """Its log line, "readiness: database unreachable", said not what to fix: now the
    server's words say it."""
    client = await _refused_service(aiohttp_client, limited_role, database_url, pg_server)
    said = (f'readiness: database unreachable (TooManyConnectionsError: too many connections '
            f'for role "{limited_role}")')
    for _ in range(3 * POOL_SIZE):  # the first ones meet the pool's dropped connections
        answer = await client.get("/readyz")
        assert answer.status == 503
        if said in caplog.text:
            break
    assert said in caplog.text
