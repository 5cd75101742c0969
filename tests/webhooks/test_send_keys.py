"""An endpoint's ``send_keys``: send.* events of those API keys' messages only (a key's
rotation line counts as one), set and shown through /api/v1/webhooks, delivered by the
service's own worker."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import rotate_key, split_key
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.relayoutcomes import Claimed, RelayConfig, record
from postwarden_admin_api.send.submit import Outcome, SubmitResult
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey, bearer
from tests.fixtures.submissions import ROOMY, submission

from .conftest import Start, hook_url
from .receiver import Receiver, wait_for
from .support import generate_secret

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]


async def key_id(mint_key: MintKey) -> str:
    parts = split_key(await mint_key(Role.SENDER, ["*@example.com"]))
    assert parts is not None
    return parts[0]


async def queued_by(database_url: str, sender: str) -> str:
    """A message sent with the key ``sender``, queued by Postfix: its send.queued event."""
    conn = await connect(database_url)
    try:
        accepted = await enqueue(conn, submission(sender, "r@example.org"), ROOMY)
        await record(conn, RelayConfig("127.0.0.1", 25, 3, 1.0),
                     Claimed(accepted.id, "app@example.com", [], b"", attempts=1),
                     SubmitResult(Outcome.QUEUED, "250 queued as QK1", "QK1"))
    finally:
        await conn.close()
    return str(accepted.id)


def hook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """An endpoint named ``name``, with a suffix: the module's tests share a database."""
    return {"name": f"{name}-{uuid.uuid4().hex[:6]}", "url": url, "events": ["send.queued"],
            "secret": generate_secret(), **extra}


async def created(client: Client, admin_key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/webhooks", json=body, headers=bearer(admin_key))
    assert response.status == 201, await response.text()
    shown: dict[str, Any] = await response.json()
    return shown


@pytest.mark.parametrize("listed", ["first", "successor"])
async def test_an_endpoint_gets_the_send_events_of_its_keys_lines_only(  # noqa: PLR0917 - fixtures
    start: Start, receiver: Receiver, admin_key: str, mint_key: MintKey, database_url: str,
    listed: str,
) -> None:
    """App B's key, rotated: listing either key of its line lets both keys' events in."""
    client = await start()
    app_a, app_b = await key_id(mint_key), await key_id(mint_key)
    conn: asyncpg.Connection = await connect(database_url)
    try:
        rotated = split_key(await rotate_key(conn, app_b, dt.timedelta(hours=1)) or "")
    finally:
        await conn.close()
    assert rotated is not None
    app_b_now = rotated[0]
    send_keys = [app_b if listed == "first" else app_b_now]
    only_b = await created(client, admin_key,
                           hook("only-b", hook_url(receiver) + "/b", send_keys=send_keys))
    every = await created(client, admin_key, hook("every", hook_url(receiver) + "/all"))
    assert (only_b["send_keys"], every["send_keys"]) == (send_keys, None)
    fetched = await client.get(f"/api/v1/webhooks/{only_b['id']}", headers=bearer(admin_key))
    assert (await fetched.json())["send_keys"] == send_keys
    audited = await client.get("/api/v1/admin-audit", params={"action": "webhook.created"},
                               headers=bearer(admin_key))
    [entry] = [e for e in (await audited.json())["entries"] if e["target"] == only_b["name"]]
    assert entry["summary"]["send_keys"] == send_keys

    of_a = await queued_by(database_url, app_a)
    of_b = await queued_by(database_url, app_b)  # during its grace
    of_b_now = await queued_by(database_url, app_b_now)  # its successor: the same app

    conn = await connect(database_url)
    try:  # raised with the timeline event: none for endpoint only-b can come later
        raised = await conn.fetch(
            "SELECT e.payload->>'id' FROM webhook_deliveries d"
            " JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = $1",
            only_b["id"])
    finally:
        await conn.close()
    assert sorted(row[0] for row in raised) == sorted([of_b, of_b_now])

    def ids(path: str) -> list[str]:
        return sorted(json.loads(r.body)["data"]["id"] for r in receiver.delivered()
                      if r.path == path)

    assert await wait_for(lambda: len(ids("/hook/all")) == 3 and len(ids("/hook/b")) == 2)
    assert ids("/hook/all") == sorted([of_a, of_b, of_b_now])
    assert ids("/hook/b") == sorted([of_b, of_b_now])


async def test_send_keys_set_to_null_lets_every_key_through(
    start: Start, admin_key: str, mint_key: MintKey,
) -> None:
    client = await start()
    shown = await created(client, admin_key, hook("narrowed", "https://hooks.example.com/n",
                                                   send_keys=[await key_id(mint_key)]))
    changed = await client.patch(f"/api/v1/webhooks/{shown['id']}", json={"send_keys": None},
                                 headers=bearer(admin_key))
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["send_keys"] is None


@pytest.mark.parametrize(
    ("send_keys", "message"),
    [pytest.param([], "expected null (every key) or a list of 1..100 API key ids", id="empty"),
     pytest.param("k1", "expected null (every key) or a list of 1..100 API key ids",
                  id="not-a-list"),
     pytest.param([7], "expected null (every key) or a list of 1..100 API key ids",
                  id="not-a-string"),
     pytest.param(["x" * 65], "expected null (every key) or a list of 1..100 API key ids",
                  id="too-long"),
     pytest.param(["nosuchkey", "alsonone"], "no such API key: alsonone, nosuchkey",
                  id="unknown")],
)
async def test_send_keys_are_checked_with_the_other_fields(
    start: Start, admin_key: str, send_keys: Any, message: str,
) -> None:
    client = await start()
    body = {**hook("refused", "https://hooks.example.com/r", send_keys=send_keys),
            "kind": "chat"}
    response = await client.post("/api/v1/webhooks", json=body, headers=bearer(admin_key))
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "validation_failed"
    assert {d["field"]: d["message"] for d in error["details"]} == {
        "send_keys": message, "kind": "expected webhook, slack or api_call"}
    shown = await created(client, admin_key, hook("kept", "https://hooks.example.com/k"))
    changed = await client.patch(f"/api/v1/webhooks/{shown['id']}",
                                 json={"send_keys": send_keys}, headers=bearer(admin_key))
    assert changed.status == 422, await changed.text()
    [detail] = (await changed.json())["error"]["details"]
    assert detail == {"field": "send_keys", "message": message}
