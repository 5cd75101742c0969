"""A receiver answering 410 Gone says it will take no delivery again (a deleted Slack
webhook): it was retried as any failure, each delivery spending its attempts to be dead
all the same, and every new event raised one more. The delivery is dead at once and the
endpoint disabled, with the reason shown and an entry in the admin audit log. An active
rule that notifies it now notifies nobody: that is logged, and the entry holds the
warning."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_store import connect
from tests.admin_api.test_policies import upload
from tests.fixtures.adminapp import bearer

from .conftest import Start, StubDns, hook_url
from .receiver import Receiver, Tls, wait_for, wait_for_async
from .support import (
    KEYRING,
    audit_event,
    raise_reject,
    reject_hook,
    running_worker,
    worker_options,
    write_audit,
)

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: its receiver's port may be an earlier test's."""
    return fresh_database_url


async def _shown(client: Client, key: str, hook: str) -> dict[str, Any]:
    response = await client.get(hook, headers=bearer(key))
    assert response.status == 200, await response.text()
    shown: dict[str, Any] = await response.json()
    return shown


NOTIFYING = ("version: 1\nname: archive\nrules:\n  - name: tell-archive\n    when:\n"
             "      sender: [nobody@evil.test]\n    then: {action: reject, notify: [archived]}\n")


async def test_a_gone_receiver_disables_its_endpoint(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.statuses = [410]
    client = await start(max_attempts=5)
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "archived", "url": hook_url(receiver), "kind": "slack",
        "events": ["message.rejected"]})
    assert created.status == 201, await created.text()
    hook = f"/api/v1/webhooks/{(await created.json())['id']}"
    assert (await _shown(client, admin_key, hook))["disabled_reason"] is None
    _, revision = await upload(client, admin_key, NOTIFYING)
    activated = await client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                  headers=bearer(admin_key))
    assert (await activated.json())["warnings"] == []
    await raise_reject(database_url)

    async def disabled() -> bool:
        return not (await _shown(client, admin_key, hook))["enabled"]

    assert await wait_for_async(disabled)
    shown = await _shown(client, admin_key, hook)
    assert shown["disabled_reason"] == "the receiver answered 410 Gone"
    deliveries = await (await client.get(f"{hook}/deliveries", headers=bearer(admin_key))).json()
    assert [(d["status"], d["attempts"], d["last_status_code"], d["last_error"])
            for d in deliveries["deliveries"]] == [
        ("dead", 1, 410, "HTTP 410 (gone): not retried")]
    conn = await connect(database_url)
    try:
        audit = await conn.fetch("SELECT key_id, action, target, summary FROM admin_audit"
                                 " WHERE action = 'webhook.disabled'")
    finally:
        await conn.close()
    assert [(r["key_id"], r["target"]) for r in audit] == [(None, "archived")]
    (warning,) = audit[0]["summary"]["warnings"]
    assert (warning["code"], warning["endpoint"], warning["rules"]) == (
        "notify_endpoint_disabled", "archived", ["archive/tell-archive"])
    assert "the receiver answered 410 Gone" in warning["message"]
    assert "policy rules archive/tell-archive: notify names 'archived'" in caplog.text

    await raise_reject(database_url)  # disabled: raises nothing for it
    assert len(receiver.requests) == 1
    enabled = await client.patch(hook, headers=bearer(admin_key), json={"enabled": True})
    assert enabled.status == 200, await enabled.text()
    assert (await enabled.json())["disabled_reason"] is None


async def test_a_410_for_a_url_set_again_since_disables_nothing(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
) -> None:
    """The 410 is the old receiver's: the endpoint now points at another. Nor does it
    end the delivery: dead, its event never reached the new receiver (a replay of it,
    made for the old URL, is refused)."""
    receiver.statuses = [410]
    receiver.delay_seconds = 1.0
    endpoint = await reject_hook(pool, "moved", hook_url(receiver))
    await write_audit(pool, audit_event("reject"))
    async with running_worker(pool, worker_options(tls, dns)):
        assert await wait_for(lambda: len(receiver.requests) == 1)
        await pool.execute("UPDATE webhook_endpoints SET url_ciphertext = $2 WHERE id = $1",
                           endpoint, KEYRING.encrypt(hook_url(receiver) + "/new"))

        async def recorded() -> bool:
            return await pool.fetchval("SELECT status FROM webhook_deliveries") != "pending"

        assert await wait_for_async(recorded)
    row = await pool.fetchrow("SELECT enabled, disabled_reason FROM webhook_endpoints")
    assert (row["enabled"], row["disabled_reason"]) == (True, None)
    assert [(r.path, r.status) for r in receiver.requests] == [("/hook", 410), ("/hook/new", 200)]
    assert await pool.fetchval("SELECT status FROM webhook_deliveries") == "delivered"
