"""/api/v1/webhooks through the admin service: CRUD, roles, the guard, deliveries, replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.settings import ServiceSettings
from postwarden_admin_api.webhooks.signing import verify
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer
from tests.webhooks.support import generate_secret

from .conftest import RECEIVER_NAME
from .receiver import Receiver, wait_for
from .support import audit_event

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, admin_settings: ServiceSettings) -> Client:
    """The service with its settings' options: nothing private allowed."""
    return await aiohttp_client(create_app(admin_settings))


def new_hook(name: str, url: str = "https://hooks.example.com/in", **extra: Any
             ) -> dict[str, Any]:
    return {"name": name, "url": url, "events": ["message.rejected"],
            "secret": generate_secret(), **extra}


async def test_create_shows_secret_only_as_set(client: Client, admin_key: str,
                                               database_url: str) -> None:
    body = new_hook("crud-1")
    response = await client.post("/api/v1/webhooks", json=body, headers=bearer(admin_key))
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["secret"] == {"is_set": True}
    assert created["kind"] == "webhook" and created["enabled"] is True
    listing = await client.get("/api/v1/webhooks", headers=bearer(admin_key))
    text = await listing.text()
    assert "crud-1" in text and body["secret"] not in text
    conn = await connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT secret_ciphertext FROM webhook_endpoints WHERE id = $1", created["id"])
        audit = await conn.fetch("SELECT summary::text FROM admin_audit WHERE target = 'crud-1'")
    finally:
        await conn.close()
    assert stored.startswith("v1:") and body["secret"] not in stored
    assert audit and all(body["secret"] not in row[0] for row in audit)


@pytest.mark.parametrize(
    ("url", "reason"),
    [("http://hooks.example.com/", "scheme_not_https"),
     ("https://user:pw@hooks.example.com/", "userinfo_present"),
     ("https://svc.internal/", "reserved_name"),
     ("https://0x7f.1/", "loopback"),
     ("https://[::ffff:169.254.169.254]/", "link_local")],
)
async def test_create_refuses_url_with_reason(client: Client, admin_key: str, url: str,
                                              reason: str) -> None:
    response = await client.post("/api/v1/webhooks", json=new_hook("bad", url),
                                 headers=bearer(admin_key))
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "url_not_allowed"
    assert error["details"][0]["reason"] == reason


async def test_update_refuses_url_and_keeps_the_old_one(client: Client, admin_key: str) -> None:
    created = await (await client.post("/api/v1/webhooks", json=new_hook("upd-1"),
                                       headers=bearer(admin_key))).json()
    path = f"/api/v1/webhooks/{created['id']}"
    refused = await client.patch(path, json={"url": "https://10.0.0.1/"},
                                 headers=bearer(admin_key))
    assert refused.status == 422
    assert (await refused.json())["error"]["details"][0]["reason"] == "private"
    changed = await client.patch(path, json={"enabled": False, "events": ["send.failed"]},
                                 headers=bearer(admin_key))
    assert changed.status == 200
    shown = await changed.json()
    assert (shown["url"], shown["enabled"], shown["events"]) == (
        "https://hooks.example.com/\N{HORIZONTAL ELLIPSIS}", False, ["send.failed"])
    assert (await client.delete(path, headers=bearer(admin_key))).status == 200
    assert (await client.get(path, headers=bearer(admin_key))).status == 404


async def test_allowed_network_from_settings(
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    admin_key: str,
) -> None:
    settings = make_admin_settings(webhook_allowed_networks="10.9.0.0/16")
    client = await aiohttp_client(create_app(settings))
    ok = await client.post("/api/v1/webhooks", json=new_hook("lan", "https://10.9.8.7/"),
                           headers=bearer(admin_key))
    assert ok.status == 201, await ok.text()
    refused = await client.post("/api/v1/webhooks", json=new_hook("lan2", "https://10.8.0.1/"),
                                headers=bearer(admin_key))
    assert refused.status == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "x y", "url": "https://a.example.com/"}, "name"),
     ({"name": "nosecret", "url": "https://a.example.com/"}, "secret"),
     ({**new_hook("ev"), "events": ["message.notify"]}, "events"),
     ({**new_hook("sec"), "secret": "hunter2"}, "secret"),
     ({**new_hook("hdr"), "headers": {"X": "y"}}, "headers"),
     ({"name": "api", "url": "https://a.example.com/", "kind": "api_call"}, "body_template"),
     # aiohttp refuses a control character but HTAB when it sends: every delivery failed
     *[pytest.param({"name": "ctl", "url": "https://a.example.com/", "kind": "api_call",
                     "body_template": {}, "headers": {"X-Token": f"a{ch}b"}}, "headers",
                    id=f"header-{ord(ch):#04x}") for ch in "\x01\x1b\x7f"],
     ({**new_hook("extra"), "color": "red"}, "color")],
)
async def test_validation(client: Client, admin_key: str, body: dict[str, Any],
                          field: str) -> None:
    response = await client.post("/api/v1/webhooks", json=body, headers=bearer(admin_key))
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "validation_failed"
    assert field in {d["field"] for d in error["details"]}
    assert "hunter2" not in str(error)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"1e999"])
async def test_a_template_number_json_does_not_have_is_a_400(
    client: Client, admin_key: str, number: bytes
) -> None:
    """Python reads these, jsonb refuses them: once a 500 on create and on update."""
    headers = {**bearer(admin_key), "Content-Type": "application/json"}
    template = b'"body_template": {"n": %s}' % number
    hook = (b'{"name": "template-%s", "url": "https://hooks.example.com/in", '
            b'"kind": "api_call", %s}' % (number, template))
    response = await client.post("/api/v1/webhooks", headers=headers, data=hook)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "invalid_json"
    created = await client.post("/api/v1/webhooks", headers=headers,
                                data=hook.replace(template, b'"body_template": {"n": 1}'))
    assert created.status == 201, await created.text()
    response = await client.patch(f"/api/v1/webhooks/{(await created.json())['id']}",
                                  headers=headers, data=b"{%s}" % template)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "invalid_json"


async def test_name_taken(client: Client, admin_key: str) -> None:
    first = await client.post("/api/v1/webhooks", json=new_hook("twice"),
                              headers=bearer(admin_key))
    assert first.status == 201
    second = await client.post("/api/v1/webhooks", json=new_hook("twice"),
                               headers=bearer(admin_key))
    assert second.status == 409
    error = (await second.json())["error"]  # its detail says what is wrong, as others do
    assert error["details"] == [{"field": "name", "message": "taken: choose another name"}]


async def test_roles(client: Client, mint_key: MintKey) -> None:
    operator = await mint_key(Role.OPERATOR)
    created = await client.post("/api/v1/webhooks", json=new_hook("by-operator"),
                                headers=bearer(operator))
    assert created.status == 201
    for role in (Role.AUDITOR, Role.SENDER):
        key = await mint_key(role, allowed_senders=("a@example.org",))
        assert (await client.get("/api/v1/webhooks", headers=bearer(key))).status == 403
        refused = await client.post("/api/v1/webhooks", json=new_hook(f"by-{role}"),
                                    headers=bearer(key))
        assert refused.status == 403


async def test_api_call_headers_are_write_only(client: Client, admin_key: str) -> None:
    body = {"name": "crm", "url": "https://api.example.com/x", "kind": "api_call",
            "headers": {"Authorization": "Bearer s3cr3t-token"},
            "body_template": {"event": "{{ type }}", "who": "{{ data.sender }}"}}
    response = await client.post("/api/v1/webhooks", json=body, headers=bearer(admin_key))
    assert response.status == 201, await response.text()
    shown = await response.json()
    assert shown["headers"] == {"is_set": True} and shown["secret"] == {"is_set": False}
    assert "s3cr3t-token" not in await response.text()


async def test_deliveries_listed_and_replayed_and_no_event_lost_while_stopped(
    start: Callable[..., Any], admin_key: str, receiver: Receiver, database_url: str,
) -> None:
    secret = generate_secret()
    first: Client = await start()
    hook = new_hook("live", f"https://{RECEIVER_NAME}:{receiver.port}/in", secret=secret)
    created = await first.post("/api/v1/webhooks", json=hook, headers=bearer(admin_key))
    assert created.status == 201, await created.text()
    endpoint = await created.json()
    await first.close()  # the admin service is down; the milter goes on writing audit rows
    conn = await connect(database_url)
    try:
        await write_audit_batch(conn, [audit_event("reject") for _ in range(3)])
    finally:
        await conn.close()
    assert receiver.requests == []

    second: Client = await start()
    assert await wait_for(lambda: len(receiver.delivered()) == 3)
    for got in receiver.requests:
        verify(secret, got.headers, got.body)
    path = f"/api/v1/webhooks/{endpoint['id']}/deliveries"
    listed = await (await second.get(path, headers=bearer(admin_key))).json()
    deliveries = listed["deliveries"]
    assert [d["status"] for d in deliveries] == ["delivered"] * 3
    assert {d["type"] for d in deliveries} == {"message.rejected"}

    past = deliveries[0]["id"]
    replayed = await second.post(f"{path}/{past}/replay", headers=bearer(admin_key))
    assert replayed.status == 202, await replayed.text()
    assert (await replayed.json())["replay_of"] == past
    assert await wait_for(lambda: len(receiver.delivered()) == 4)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids[-1] == deliveries[0]["event_id"]  # a replay keeps the event's id
    missing = await second.post(f"{path}/999999/replay", headers=bearer(admin_key))
    assert missing.status == 404
    pending = await second.get(f"{path}?status=pending", headers=bearer(admin_key))
    assert (await pending.json())["deliveries"] == []


async def test_deliveries_refuse_a_parameter_that_is_no_filter(
    client: Client, admin_key: str
) -> None:
    # A misspelt status (stauts=dead) listed every delivery, the pending ones among them.
    created = await client.post("/api/v1/webhooks", json=new_hook("filtered"),
                                headers=bearer(admin_key))
    path = f"/api/v1/webhooks/{(await created.json())['id']}/deliveries"
    response = await client.get(path, headers=bearer(admin_key),
                                params={"stauts": "dead", "limit": "0"})
    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert [d["field"] for d in details] == ["stauts", "limit"]


async def test_deliveries_before_id_0_is_refused_as_the_other_pages_refuse_it(
    client: Client, admin_key: str
) -> None:
    # It was read as no filter: "the deliveries before 0" listed every one.
    created = await client.post("/api/v1/webhooks", json=new_hook("before-zero"),
                                headers=bearer(admin_key))
    path = f"/api/v1/webhooks/{(await created.json())['id']}/deliveries"
    response = await client.get(path, headers=bearer(admin_key), params={"before_id": "0"})
    assert response.status == 422, await response.text()
    details = (await response.json())["error"]["details"]
    assert [d["field"] for d in details] == ["before_id"]


async def test_an_update_naming_no_field_changes_and_logs_nothing(
    client: Client, admin_key: str
) -> None:
    # It wrote webhook.updated with "fields": [] to the admin log, and a new updated_at.
    created = await (await client.post("/api/v1/webhooks", json=new_hook("untouched"),
                                       headers=bearer(admin_key))).json()
    response = await client.patch(f"/api/v1/webhooks/{created['id']}", json={},
                                  headers=bearer(admin_key))
    assert response.status == 200, await response.text()
    assert (await response.json())["updated_at"] == created["updated_at"]
    log = await client.get("/api/v1/admin-audit", headers=bearer(admin_key),
                           params={"action": "webhook.updated"})
    assert [e for e in (await log.json())["entries"] if e["target"] == "untouched"] == []
    missing = await client.patch("/api/v1/webhooks/999999999", json={},
                                 headers=bearer(admin_key))
    assert missing.status == 404
