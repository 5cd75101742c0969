"""A request that waits for a pooled connection while a new one cannot be made (the
server, or a firewall on the way, takes the connection and never answers) was 503
``database_busy``, "every database connection is in use", with a pool far from full:
an admin looked for slow queries, a client retried after 1 s. It is
``database_unavailable``; a pool truly full stays ``database_busy``
(test_pool_exhaustion.py). A TCP relay on loopback stands for the network (.dbrelay)."""

from __future__ import annotations

from typing import Any

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL, Role
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for
from tests.fixtures.dbrelay import relayed

pytestmark = pytest.mark.postgres


async def test_a_connect_that_never_answers_is_database_unavailable(
        aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey) -> None:
    key = await mint_key(Role.ADMIN)
    async with relayed(database_url) as (relay, through):
        app = create_app(settings_for(through, pool_min_size=1, pool_max_size=4))
        client = await aiohttp_client(app)
        relay.silent = True
        await app[POOL].expire_connections()  # each acquire makes a new one
        answer = await client.get("/api/v1/keys", headers=bearer(key))
        body: Any = await answer.json()
    assert answer.status == 503
    assert body["error"]["code"] == "database_unavailable"
    assert answer.headers["Retry-After"] == "5"
