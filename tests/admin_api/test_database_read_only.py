"""A database that refuses writes (a standby the service was pointed at after a failover,
default_transaction_read_only set for maintenance) answered every request 500
internal_error, a traceback logged for each: the key check of every request writes.
It is 503 database_unavailable (Retry-After), which a client retries, as for a
database away."""

from __future__ import annotations

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL, Role
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of the test's own: it is made read-only."""
    return fresh_database_url


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/keys"), ("POST", "/api/v1/keys")])
async def test_a_read_only_database_is_503_database_unavailable(  # noqa: PLR0917 - fixtures
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    caplog: pytest.LogCaptureFixture, method: str, path: str,
) -> None:
    key = await mint_key(Role.ADMIN)
    client = await aiohttp_client(create_app(settings_for(database_url)))
    admin = await connect(database_url)
    try:
        await admin.execute("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET "
                            "default_transaction_read_only = on', current_database()); END $$")
    finally:
        await admin.close()
    await client.app[POOL].expire_connections()  # the next ones read-only

    response = await client.request(method, path, headers=bearer(key),
                                    json={"name": "n", "role": "auditor"})
    assert (response.status, (await response.json())["error"]["code"],
            response.headers.get("Retry-After")) == (503, "database_unavailable", "5")
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
