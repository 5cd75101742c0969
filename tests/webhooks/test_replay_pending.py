"""docs/api.md: replaying a delivery that is still pending is 409 ``delivery_pending``
(only a delivered or dead one may be delivered again), and queues nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from tests.admin_api.test_conflict_codes import error_code
from tests.fixtures.adminapp import AiohttpClient, bearer
from tests.webhooks.support import generate_secret

from .support import audit_event

pytestmark = pytest.mark.postgres


async def test_replaying_a_pending_delivery_is_delivery_pending(
    aiohttp_client: AiohttpClient, admin_settings: ServiceSettings, admin_key: str,
    database_url: str,
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(admin_settings))
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "waiting", "url": "https://hooks.example.com/in",
        "events": ["message.rejected"], "secret": generate_secret()})
    assert created.status == 201, await created.text()
    path = f"/api/v1/webhooks/{(await created.json())['id']}/deliveries"
    conn = await connect(database_url)
    try:
        # A rejection as the milter records it, its delivery waiting for a retry an
        # hour away: in one transaction, so the service's worker never finds it due.
        async with conn.transaction():
            await write_audit_batch(conn, [audit_event("reject")])
            await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = "
                               "now() + interval '1 hour' WHERE status = 'pending'")
    finally:
        await conn.close()
    [pending] = (await (await client.get(path, headers=bearer(admin_key))).json())["deliveries"]
    assert pending["status"] == "pending"

    response = await client.post(f"{path}/{pending['id']}/replay", headers=bearer(admin_key))
    assert response.status == 409
    assert await error_code(response) == "delivery_pending"
    listed = await (await client.get(path, headers=bearer(admin_key))).json()
    assert listed["deliveries"] == [pending]
