"""A replay goes only to the URL the delivery was made for (README, docs/api.md):
an operator, who may not read the audit log, cannot point an endpoint elsewhere
and replay its past deliveries there (409 ``webhook_url_changed``); replays
still pending when the URL is set are marked dead, not sent to the new URL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from tests.admin_api.test_conflict_codes import error_code
from tests.fixtures.adminapp import MintKey, bearer
from tests.webhooks.support import generate_secret

from .conftest import RECEIVER_NAME, Start
from .receiver import Receiver, wait_for
from .support import audit_event

pytestmark = pytest.mark.postgres


async def _delivered_hook(client: TestClient[Any, Any], admin_key: str, receiver: Receiver,
                          database_url: str, *, name: str, events: int
                          ) -> tuple[str, str]:
    """A webhook ``name`` at the receiver's /siem with ``events`` rejections delivered
    to it; returns the receiver's base URL and the webhook's path."""
    base = f"https://{RECEIVER_NAME}:{receiver.port}"
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": name, "url": f"{base}/siem", "events": ["message.rejected"],
        "secret": generate_secret()})
    assert created.status == 201, await created.text()
    conn = await connect(database_url)
    try:
        await write_audit_batch(conn, [audit_event("reject") for _ in range(events)])
    finally:
        await conn.close()
    assert await wait_for(lambda: len(receiver.delivered()) == events)
    return base, f"/api/v1/webhooks/{(await created.json())['id']}"


async def _deliveries(client: TestClient[Any, Any], hook: str, key: str
                      ) -> list[dict[str, Any]]:
    listed = await client.get(f"{hook}/deliveries", headers=bearer(key))
    assert listed.status == 200
    deliveries: list[dict[str, Any]] = (await listed.json())["deliveries"]
    return deliveries


async def test_operator_cannot_replay_past_deliveries_to_a_new_url(
    start: Start, admin_key: str, mint_key: MintKey, receiver: Receiver, database_url: str,
) -> None:
    client = await start()
    operator = await mint_key(Role.OPERATOR)
    base, hook = await _delivered_hook(client, admin_key, receiver, database_url,
                                       name="moved", events=2)
    # Same origin, another path: a different receiver all the same (a Slack URL's
    # path is the channel).
    moved = await client.patch(hook, headers=bearer(operator),
                               json={"url": f"{base}/operator-owned"})
    assert moved.status == 200
    past = await _deliveries(client, hook, operator)
    for delivery in past:
        refused = await client.post(f"{hook}/deliveries/{delivery['id']}/replay",
                                    headers=bearer(operator))
        assert refused.status == 409
        assert await error_code(refused) == "webhook_url_changed"
    assert await _deliveries(client, hook, operator) == past  # nothing queued

    # A delivery made for the new URL replays as before, to that URL.
    conn = await connect(database_url)
    try:
        await write_audit_batch(conn, [audit_event("reject")])
    finally:
        await conn.close()
    assert await wait_for(lambda: len(receiver.delivered()) == 3)
    newest = (await _deliveries(client, hook, operator))[0]
    replayed = await client.post(f"{hook}/deliveries/{newest['id']}/replay",
                                 headers=bearer(operator))
    assert replayed.status == 202
    assert await wait_for(lambda: len(receiver.delivered()) == 4)
    paths = [r.path for r in receiver.delivered()]
    assert paths == ["/siem", "/siem", "/operator-owned", "/operator-owned"]
    first, last = (json.loads(r.body)["data"] for r in receiver.delivered()[2:])
    assert first == last


async def test_setting_the_url_kills_pending_replays(
    start: Start, admin_key: str, mint_key: MintKey, receiver: Receiver, database_url: str,
) -> None:
    client = await start()
    operator = await mint_key(Role.OPERATOR)
    base, hook = await _delivered_hook(client, admin_key, receiver, database_url,
                                       name="paused", events=1)
    # Disabled: the worker claims none of its deliveries, so the replay stays pending.
    assert (await client.patch(hook, headers=bearer(operator),
                               json={"enabled": False})).status == 200
    [original] = await _deliveries(client, hook, operator)
    queued = await client.post(f"{hook}/deliveries/{original['id']}/replay",
                               headers=bearer(operator))
    assert queued.status == 202
    assert (await queued.json())["status"] == "pending"

    moved = await client.patch(hook, headers=bearer(operator),
                               json={"url": f"{base}/operator-owned"})
    assert moved.status == 200
    replay, _ = await _deliveries(client, hook, operator)
    assert replay["replay_of"] == original["id"]
    assert replay["status"] == "dead"
    assert replay["last_error"] == "endpoint URL changed before the replay was sent"
