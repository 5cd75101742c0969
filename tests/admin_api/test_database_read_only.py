"""A database that refuses writes (a standby the service was pointed at after a failover,
default_transaction_read_only set for maintenance) answered every request 500
internal_error, a traceback logged for each: the key check of every request writes.
It is 503 database_unavailable (Retry-After), which a client retries, as for a
database away; /readyz, which said ready, says the database is read-only.

`serve` on a database already read-only failed in a start-up step's write, with
asyncio's traceback: it says so in one line and exits 1, as on a database unreachable
at start (systemd tries again every 2 s, until it is back or promoted).

The CLI's writing commands (keys create, revoke, rotate, secrets rotate) printed
asyncpg's "cannot execute INSERT in a read-only transaction": they say what `serve`
says, and exit 1 as on other database failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL, Role
from postwarden_admin_api.keys import create_key
from postwarden_store import connect
from tests.admin_api.test_startup_schema import _run, assert_refused_in_one_line
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for
from tests.fixtures.postgres import set_read_only

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of the test's own: it is made read-only."""
    return fresh_database_url


async def _read_only_service(aiohttp_client: AiohttpClient, database_url: str) -> Client:
    """The service started, then its database made read-only."""
    client = await aiohttp_client(create_app(settings_for(database_url)))
    await set_read_only(database_url)
    await client.app[POOL].expire_connections()  # the next ones read-only
    return client


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/keys"), ("POST", "/api/v1/keys")])
async def test_a_read_only_database_is_503_database_unavailable(  # noqa: PLR0917 - fixtures
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    caplog: pytest.LogCaptureFixture, method: str, path: str,
) -> None:
    key = await mint_key(Role.ADMIN)
    client = await _read_only_service(aiohttp_client, database_url)
    response = await client.request(method, path, headers=bearer(key),
                                    json={"name": "n", "role": "auditor"})
    assert (response.status, (await response.json())["error"]["code"],
            response.headers.get("Retry-After")) == (503, "database_unavailable", "5")
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


async def test_readyz_says_a_read_only_database_is_unready(
    aiohttp_client: AiohttpClient, database_url: str,
) -> None:
    """/readyz said ready while every request was 503."""
    client = await _read_only_service(aiohttp_client, database_url)
    response = await client.get("/readyz")
    assert (response.status, await response.json()) == (
        503, {"status": "unready", "problem": "database read-only"})


REFUSAL = ("postwarden-admin: the database refuses writes (a standby, or "
           "default_transaction_read_only on): point database_url at the primary")


def test_serve_on_a_read_only_database_says_so_in_one_line(database_url: str) -> None:
    asyncio.run(set_read_only(database_url))
    done = _run(database_url, "serve")
    assert (done.returncode, done.stderr.splitlines()) == (1, [REFUSAL])


async def _key_id(database_url: str) -> str:
    conn = await connect(database_url)
    try:
        return (await create_key(conn, Role.OPERATOR, "ci")).split("_")[1]
    finally:
        await conn.close()


@pytest.mark.parametrize("argv", [
    pytest.param(["keys", "create", "--role", "admin", "--name", "n"], id="keys-create"),
    pytest.param(["keys", "revoke", "{key_id}"], id="keys-revoke"),
    pytest.param(["keys", "rotate", "{key_id}"], id="keys-rotate"),
    pytest.param(["secrets", "rotate", "--new-key-file", "{new_key}"], id="secrets-rotate"),
])
def test_a_writing_cli_command_on_a_read_only_database_says_so_in_one_line(
    database_url: str, tmp_path: Path, argv: list[str]
) -> None:
    key_id = asyncio.run(_key_id(database_url))
    asyncio.run(set_read_only(database_url))
    assert_refused_in_one_line(database_url, tmp_path, argv, REFUSAL, key_id=key_id)
