"""Deactivating a policy raises ``policy.deactivated``, as activating one raises
``policy.activated``: by hand, and through the deploy route (``policy push --prune``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.webhooks.signing import verify
from tests.fixtures.adminapp import bearer
from tests.webhooks.support import generate_secret

from .conftest import RECEIVER_NAME, Start
from .receiver import Receiver, wait_for

pytestmark = pytest.mark.postgres
RULE = "  - name: {0}-r\n    when:\n      sender: [{0}@evil.test]\n    then: reject\n"


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the test compares every event raised. Taken first,
    so it is dropped after the service stops."""
    return fresh_database_url


async def _upload(client: TestClient[Any, Any], key: str, name: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/policies", headers={**bearer(key), "Content-Type": "application/yaml"},
        data=f"version: 1\nname: {name}\nrules:\n{RULE.format(name)}".encode())
    assert response.status == 201, await response.text()
    revision: dict[str, Any] = await response.json()
    return revision


async def test_deactivation_by_hand_and_by_deploy_raises_policy_deactivated(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    client = await start()
    secret = generate_secret()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "ops", "url": f"https://{RECEIVER_NAME}:{receiver.port}/in",
        "events": ["policy.deactivated"], "secret": secret})
    assert created.status == 201, await created.text()
    one, two = [await _upload(client, admin_key, name) for name in ("one", "two")]
    deployed = await client.post("/api/v1/policies/deploy", headers=bearer(admin_key),
                                 json={"activate": [one["id"], two["id"]]})
    assert deployed.status == 200, await deployed.text()

    by_hand = await client.post("/api/v1/policies/one/deactivate", headers=bearer(admin_key))
    assert by_hand.status == 200, await by_hand.text()
    pruned = await client.post("/api/v1/policies/deploy", headers=bearer(admin_key),
                               json={"deactivate": ["two"]})  # what push --prune sends
    assert pruned.status == 200, await pruned.text()

    assert await wait_for(lambda: len(receiver.delivered()) == 2)
    events = []
    for got in receiver.requests:
        verify(secret, got.headers, got.body)
        events.append(json.loads(got.body))
    assert {e["type"] for e in events} == {"policy.deactivated"}  # not subscribed: activated
    data = sorted((e["data"] for e in events), key=lambda d: d["policy_name"])
    assert [(d["policy_name"], d["revision_id"], d["content_hash"]) for d in data] == [
        ("one", one["id"], one["content_hash"]), ("two", two["id"], two["content_hash"])]
    assert all(d["time"] for d in data)
