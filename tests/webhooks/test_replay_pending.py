"""docs/api.md: replaying a delivery that is still pending, or one whose replay is, is
409 ``delivery_pending`` (only a delivered or dead one may be delivered again), and
queues nothing."""

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

from .conftest import Start, hook_url
from .receiver import Receiver, wait_for
from .support import audit_event, raise_reject

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of the test's own: no other test's endpoint takes its events."""
    return fresh_database_url


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


async def test_a_delivery_whose_replay_is_pending_is_delivery_pending(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    """A replay request sent twice (a click again, a client retrying a lost 202) queued
    the event twice for the endpoint, both copies sent at once; the second is refused."""
    client = await start()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "twice", "url": hook_url(receiver), "events": ["message.rejected"],
        "secret": generate_secret()})
    assert created.status == 201, await created.text()
    hook = f"/api/v1/webhooks/{(await created.json())['id']}"
    await raise_reject(database_url)
    assert await wait_for(receiver.delivered)
    # Disabled, the endpoint keeps its replay pending.
    disabled = await client.patch(hook, headers=bearer(admin_key), json={"enabled": False})
    assert disabled.status == 200, await disabled.text()
    [delivered] = (await (await client.get(f"{hook}/deliveries", headers=bearer(admin_key))
                          ).json())["deliveries"]
    replay = f"{hook}/deliveries/{delivered['id']}/replay"
    first = await client.post(replay, headers=bearer(admin_key))
    assert first.status == 202, await first.text()

    again = await client.post(replay, headers=bearer(admin_key))
    assert again.status == 409
    assert await error_code(again) == "delivery_pending"
    listed = (await (await client.get(f"{hook}/deliveries", headers=bearer(admin_key))
                     ).json())["deliveries"]
    assert [d["status"] for d in listed] == ["pending", "delivered"]
