"""``/readyz`` with every pooled connection in use, the database answering: it said
"database unreachable", and logged "readiness: database unreachable (TimeoutError)", so
an admin went looking for a network or server fault. It says the pool is busy; with
PostgreSQL away it still says unreachable (test_readyz_database_down.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL
from tests.fixtures.adminapp import AiohttpClient, settings_for

pytestmark = pytest.mark.postgres
POOL_SIZE = 2


async def test_a_full_pool_is_told_as_busy_not_unreachable(
        aiohttp_client: AiohttpClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_for(database_url, pool_max_size=POOL_SIZE))
    client = await aiohttp_client(app)
    held = [await app[POOL].acquire() for _ in range(POOL_SIZE)]
    try:
        with caplog.at_level(logging.WARNING):
            answer = await client.get("/readyz")
            body: Any = await answer.json()
    finally:
        for conn in held:
            await app[POOL].release(conn)
    assert (answer.status, body) == (503, {"status": "unready", "problem": "database busy"})
    assert "readiness: every database connection is in use" in caplog.text
    assert "unreachable" not in caplog.text
    answer = await client.get("/readyz")
    assert (answer.status, await answer.json()) == (200, {"status": "ready"})
