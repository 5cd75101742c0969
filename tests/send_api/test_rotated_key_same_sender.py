"""A rotated sender key is the same sender: the key it replaced had sent messages,
claimed idempotency keys and spent its limits, and its successor carries on with all
three (rotation used to make a stranger of it: the app lost sight of its messages, a
retry across the rotation sent twice, the day's quota began afresh). Another sender
key still sees none of it."""

from __future__ import annotations

import uuid

from postwarden_admin_api.context import Role
from postwarden_admin_api.runtime_settings import RUNTIME
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, SetRuntime, body

SEND = "/api/v1/send-email"


async def _rotate(client: Client, admin_key: str, old: str) -> str:
    response = await client.post(f"/api/v1/keys/{old.split('_')[1]}/rotate",
                                 headers=bearer(admin_key), json={"grace_seconds": 3600})
    assert response.status == 201, await response.text()
    key: str = (await response.json())["key"]
    return key


async def test_the_successor_sees_the_messages_of_its_line(
    client: Client, mint_key: MintKey, admin_key: str
) -> None:
    first = await mint_key(Role.SENDER, ["*@example.com"])
    sent = await client.post(SEND, json=body(), headers=bearer(first))
    second = await _rotate(client, admin_key, first)
    third = await _rotate(client, admin_key, second)  # a line of three
    location, sent_id = sent.headers["Location"], (await sent.json())["id"]
    for key in (second, third):
        seen = await client.get(location, headers=bearer(key))
        assert seen.status == 200, await seen.text()
        listed = await client.get("/api/v1/messages", headers=bearer(key))
        assert sent_id in [m["id"] for m in (await listed.json())["messages"]]
    stranger = await mint_key(Role.SENDER, ["*@example.com"])
    assert (await client.get(location, headers=bearer(stranger))).status == 404


async def test_a_retry_across_the_rotation_gets_the_first_answer(
    client: Client, mint_key: MintKey, admin_key: str
) -> None:
    old = await mint_key(Role.SENDER, ["*@example.com"])
    request, idempotency = body(), {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await client.post(SEND, json=request, headers=bearer(old) | idempotency)
    new = await _rotate(client, admin_key, old)
    again = await client.post(SEND, json=request, headers=bearer(new) | idempotency)
    assert again.status == 202 and again.headers.get("Idempotent-Replayed") == "true"
    assert (await again.json())["id"] == (await first.json())["id"]


async def test_the_day_quota_carries_over(
    client: Client, mint_key: MintKey, admin_key: str, set_runtime: SetRuntime
) -> None:
    await set_runtime(outbound_per_key_per_day=1)
    client.app[RUNTIME].invalidate()
    try:
        old = await mint_key(Role.SENDER, ["*@example.com"])
        assert (await client.post(SEND, json=body(), headers=bearer(old))).status == 202
        new = await _rotate(client, admin_key, old)
        refused = await client.post(SEND, json=body(), headers=bearer(new))
        assert refused.status == 429
        assert (await refused.json())["error"]["code"] == "daily_quota_exceeded"
    finally:
        await set_runtime(outbound_per_key_per_day=None)
        client.app[RUNTIME].invalidate()
