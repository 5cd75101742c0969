"""Two rollbacks sent at once, each to the revision before the active one: each found
that revision before taking the policy lock, so both stepped back to the same one (and
a rollback racing an activation stepped back from a revision no longer active). The
revision is now found under the lock, as the change is made."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.revisions import POLICY_LOCK_KEY
from postwarden_store import connect
from tests.fixtures.adminapp import bearer

from .test_policies import policy, upload

pytestmark = pytest.mark.postgres
WAITING = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


async def _until_waiting(conn: asyncpg.Connection, count: int) -> None:
    for _ in range(200):  # 10 s at most
        if await conn.fetchval(WAITING) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} requests never waited for the policy lock")


async def test_two_rollbacks_at_once_step_back_twice(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    ids = [(await upload(admin_client, admin_key, policy("stepped", f"r{i}@evil.test")))[1]["id"]
           for i in range(3)]
    response = await admin_client.post(f"/api/v1/revisions/{ids[2]}/activate", headers=headers)
    assert response.status == 200
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", POLICY_LOCK_KEY)
            rollbacks = [asyncio.ensure_future(admin_client.post(
                "/api/v1/policies/stepped/rollback", headers=headers)) for _ in range(2)]
            await _until_waiting(conn, 2)
        answers = await asyncio.gather(*rollbacks)
    finally:
        await conn.close()
    assert [answer.status for answer in answers] == [200, 200]
    assert sorted([(await answer.json())["id"] for answer in answers]) == ids[:2]
    listed = await (await admin_client.get("/api/v1/policies", headers=headers)).json()
    (entry,) = [p for p in listed["policies"] if p["policy_name"] == "stepped"]
    assert entry["active_revision"] == ids[0]
