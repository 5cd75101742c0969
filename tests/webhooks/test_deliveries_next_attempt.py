"""The deliveries listing as a receiver's developer reads it: a delivered or dead
delivery is not tried again, so it shows no ``next_attempt_at`` (the worker's claim
had pushed it ahead as a lease); a pending one (a replay) shows when it is due."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer
from tests.fixtures.ports import free_port

from .conftest import RECEIVER_NAME, Start
from .receiver import Receiver, wait_for_async
from .support import generate_secret, raise_reject

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of the test's own: it lists every delivery. Taken first, so it is
    dropped after the service stops."""
    return fresh_database_url


async def _hook(client: TestClient[Any, Any], key: str, name: str, port: int) -> int:
    created = await client.post("/api/v1/webhooks", headers=bearer(key), json={
        "name": name, "url": f"https://{RECEIVER_NAME}:{port}/in",
        "events": ["message.rejected"], "secret": generate_secret()})
    assert created.status == 201, await created.text()
    hook_id: int = (await created.json())["id"]
    return hook_id


async def _deliveries(client: TestClient[Any, Any], key: str, hook_id: int
                      ) -> list[dict[str, Any]]:
    listing = await client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=bearer(key))
    assert listing.status == 200, await listing.text()
    deliveries: list[dict[str, Any]] = (await listing.json())["deliveries"]
    return deliveries


async def test_finished_deliveries_show_no_next_attempt(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    client = await start(max_attempts=2)
    delivered_hook = await _hook(client, admin_key, "up", receiver.port)
    dead_hook = await _hook(client, admin_key, "down", free_port())  # connection refused
    await raise_reject(database_url)

    async def finished() -> bool:
        listed = [*await _deliveries(client, admin_key, delivered_hook),
                  *await _deliveries(client, admin_key, dead_hook)]
        return [d["status"] for d in listed] == ["delivered", "dead"]

    assert await wait_for_async(finished)
    [delivered] = await _deliveries(client, admin_key, delivered_hook)
    [dead] = await _deliveries(client, admin_key, dead_hook)
    assert (delivered["attempts"], delivered["next_attempt_at"]) == (1, None)
    assert (dead["attempts"], dead["next_attempt_at"]) == (2, None)
    assert dead["last_error"] == "connection failed (ClientConnectorError: connection refused)"

    replayed = await client.post(
        f"/api/v1/webhooks/{dead_hook}/deliveries/{dead['id']}/replay", headers=bearer(admin_key))
    assert replayed.status == 202, await replayed.text()
    pending = await replayed.json()
    assert pending["status"] == "pending" and pending["next_attempt_at"] is not None
