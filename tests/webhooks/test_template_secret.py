"""An api_call's body template is write-only: it may carry a credential (PagerDuty's
``routing_key``), so it is stored encrypted and shown as ``{"is_set": bool}``, never
in a response, the admin audit log or a log line; deliveries fill it in as before.
A template stored in plain text before migration 0046 is used as it is and sealed
when the service starts."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.webhooks.templates import seal_plain_templates
from postwarden_store import connect
from tests.fixtures.adminapp import bearer

from .conftest import Start, hook_url
from .receiver import Receiver, wait_for
from .support import KEYRING, add_endpoint, raise_reject

pytestmark = pytest.mark.postgres

ROUTING_KEY = "R0UT1NGk3y0f0ur0nc4llt34m"
TEMPLATE = {"routing_key": ROUTING_KEY, "event_action": "trigger",
            "payload": {"summary": "{{ type }} from {{ data.sender }}"}}
STORED = "SELECT body_template, body_template_ciphertext FROM webhook_endpoints WHERE id = $1"


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: its receiver's port may be an earlier test's."""
    return fresh_database_url


async def test_a_body_template_is_never_shown_nor_stored_in_clear(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "pagerduty", "kind": "api_call", "url": hook_url(receiver),
        "events": ["message.rejected"], "body_template": TEMPLATE})
    assert created.status == 201, await created.text()
    shown: dict[str, Any] = await created.json()
    assert shown["body_template"] == {"is_set": True}
    path = f"/api/v1/webhooks/{shown['id']}"
    texts = [await created.text()]
    for response in (await client.get("/api/v1/webhooks", headers=bearer(admin_key)),
                     await client.get(path, headers=bearer(admin_key)),
                     await client.patch(path, json={"enabled": True},
                                        headers=bearer(admin_key))):
        assert response.status == 200
        texts.append(await response.text())
    assert all(ROUTING_KEY not in text for text in texts)

    await raise_reject(database_url)
    assert await wait_for(lambda: len(receiver.delivered()) == 1)
    sent = json.loads(receiver.requests[0].body)
    assert sent["routing_key"] == ROUTING_KEY
    assert sent["payload"]["summary"] == "message.rejected from alice@example.org"

    conn = await connect(database_url)
    try:
        stored = await conn.fetchrow(STORED, shown["id"])
        audit = await conn.fetch("SELECT summary::text FROM admin_audit")
    finally:
        await conn.close()
    assert stored["body_template"] is None
    assert json.loads(KEYRING.decrypt(stored["body_template_ciphertext"])) == TEMPLATE
    assert audit and all(ROUTING_KEY not in row[0] for row in audit)
    assert ROUTING_KEY not in caplog.text


async def test_a_plain_template_from_before_is_used_and_sealed_at_start(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = await connect(database_url)
    try:
        endpoint_id = await add_endpoint(conn, "legacy", hook_url(receiver),
                                         ["message.rejected"], None, kind="api_call")
        await conn.execute("UPDATE webhook_endpoints SET body_template = $1 WHERE id = $2",
                           TEMPLATE, endpoint_id)
        client = await start()
        stored = await conn.fetchrow(STORED, endpoint_id)
    finally:
        await conn.close()
    assert stored["body_template"] is None
    assert json.loads(KEYRING.decrypt(stored["body_template_ciphertext"])) == TEMPLATE
    # An admin restarting instances one at a time, as before, learns that the earlier
    # ones still running now post null in its place.
    sealing = [r for r in caplog.records if "encrypted 1 body templates" in r.getMessage()]
    assert [r.levelno for r in sealing] == [logging.WARNING]
    assert "earlier version still running now posts null" in sealing[0].getMessage()
    shown = await client.get(f"/api/v1/webhooks/{endpoint_id}", headers=bearer(admin_key))
    assert (await shown.json())["body_template"] == {"is_set": True}
    await raise_reject(database_url)
    assert await wait_for(lambda: len(receiver.delivered()) == 1)
    assert json.loads(receiver.requests[0].body)["routing_key"] == ROUTING_KEY


async def _lock_awaited(conn: asyncpg.Connection, starting: asyncio.Task[Any]) -> None:
    """Until a start waits for a row lock, or has ended (up to 10 s)."""
    deadline = time.monotonic() + 10
    while not starting.done() and time.monotonic() < deadline:
        if await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            return
        await asyncio.sleep(0.05)


async def test_a_template_a_patch_holds_while_an_instance_starts_is_sealed(
    database_url: str, start: Start, receiver: Receiver,
) -> None:
    """A PATCH under way on another instance (its row lock held) while this one
    starts: the start skipped the row, the PATCH wrote the plain template back, and it
    stayed in clear until the next start."""
    conn = await connect(database_url)
    try:
        endpoint_id = await add_endpoint(conn, "legacy", hook_url(receiver),
                                         ["message.rejected"], None, kind="api_call")
        await conn.execute("UPDATE webhook_endpoints SET body_template = $1 WHERE id = $2",
                           TEMPLATE, endpoint_id)
        async with conn.transaction():  # as a PATCH: the row locked, read, written back
            current = await conn.fetchval("SELECT body_template::text FROM webhook_endpoints "
                                          "WHERE id = $1 FOR UPDATE", endpoint_id)
            starting = asyncio.create_task(start())
            await _lock_awaited(conn, starting)
            await conn.execute("UPDATE webhook_endpoints SET enabled = true, "
                               "body_template = $1::text::jsonb WHERE id = $2",
                               current, endpoint_id)
        await starting
        stored = await conn.fetchrow(STORED, endpoint_id)
    finally:
        await conn.close()
    assert stored["body_template"] is None
    assert json.loads(KEYRING.decrypt(stored["body_template_ciphertext"])) == TEMPLATE


async def test_instances_starting_together_seal_each_template_once(
    database_url: str, receiver: Receiver,
) -> None:
    conns = [await connect(database_url) for _ in range(2)]
    try:
        for n in range(20):
            endpoint_id = await add_endpoint(conns[0], f"legacy{n}", hook_url(receiver),
                                             ["message.rejected"], None, kind="api_call")
            await conns[0].execute("UPDATE webhook_endpoints SET body_template = $1 "
                                   "WHERE id = $2", TEMPLATE, endpoint_id)
        counts = await asyncio.gather(*(seal_plain_templates(c, KEYRING) for c in conns))
        stored = await conns[0].fetch("SELECT body_template, body_template_ciphertext "
                                      "FROM webhook_endpoints")
    finally:
        for conn in conns:
            await conn.close()
    assert sum(counts) == 20
    assert all(row["body_template"] is None for row in stored)
    assert all(json.loads(KEYRING.decrypt(row["body_template_ciphertext"])) == TEMPLATE
               for row in stored)


async def test_the_shown_mask_sent_back_is_refused_not_stored_as_the_template(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    """A client that sends back what it read (GET, edit, PATCH) gave {"is_set": true}, a
    valid JSON object, which was stored in place of the template and posted."""
    client = await start()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "round-trip", "kind": "api_call", "url": hook_url(receiver),
        "events": ["message.rejected"], "body_template": TEMPLATE})
    assert created.status == 201, await created.text()
    shown: dict[str, Any] = await created.json()
    path = f"/api/v1/webhooks/{shown['id']}"
    for mask in ({"is_set": True}, {"is_set": False}):
        changed = await client.patch(path, headers=bearer(admin_key), json={
            "url": hook_url(receiver), "body_template": mask})
        assert changed.status == 422, await changed.text()
        details = (await changed.json())["error"]["details"]
        assert [d["field"] for d in details] == ["body_template"]
        assert "how a stored template is shown" in details[0]["message"]

    conn = await connect(database_url)
    try:
        row = await conn.fetchrow(STORED, shown["id"])
    finally:
        await conn.close()
    assert json.loads(KEYRING.decrypt(row["body_template_ciphertext"])) == TEMPLATE


async def test_a_new_url_needs_the_template_given_again(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    """An operator who never read the template (its routing_key) pointed the endpoint at a
    server of theirs and was sent the routing_key with the next event: a new URL needed
    the headers again, not the template, though both are write-only for that reason."""
    client = await start()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "pagerduty", "kind": "api_call", "url": hook_url(receiver),
        "events": ["message.rejected"], "body_template": TEMPLATE})
    assert created.status == 201, await created.text()
    path = f"/api/v1/webhooks/{(await created.json())['id']}"
    moved = await client.patch(path, headers=bearer(admin_key), json={
        "url": "https://collector.example.com/in", "headers": None})
    assert moved.status == 422, await moved.text()
    assert [d["field"] for d in (await moved.json())["error"]["details"]] == ["body_template"]

    await raise_reject(database_url)
    assert await wait_for(lambda: len(receiver.delivered()) == 1)
    assert json.loads(receiver.requests[0].body)["routing_key"] == ROUTING_KEY

    given = await client.patch(path, headers=bearer(admin_key), json={
        "url": "https://collector.example.com/in", "body_template": {"event": "{{ type }}"}})
    assert given.status == 200, await given.text()
