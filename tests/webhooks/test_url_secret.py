"""Endpoint URLs are secrets: encrypted at rest, masked in responses, absent from logs."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
from yarl import URL

from postwarden_admin_api.secrets import Keyring
from postwarden_admin_api.webhooks.templates import seal_plain_templates
from postwarden_admin_api.webhooks.urls import masked, origin, seal_plain_urls, url_of
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from tests.fixtures.adminapp import bearer

from .conftest import RECEIVER_NAME, Start, StubDns
from .receiver import Receiver, Tls, wait_for, wait_for_async
from .support import (
    KEYRING,
    add_endpoint,
    audit_event,
    running_worker,
    worker_options,
    write_audit,
)

pytestmark = pytest.mark.postgres

SLACK_PATH = "/services/T0001/B0002/XsEcReTpAtHx"
SECRET_QUERY = "token=q-s3cr3t-value"
SECRET_PARTS = ("XsEcReTpAtHx", "q-s3cr3t-value", "T0001/B0002")


def assert_hidden(text: str) -> None:
    for part in SECRET_PARTS:
        assert part not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [pytest.param("https://hooks.slack.com/services/T/B/x", "https://hooks.slack.com/…",
                  id="slack"),
     pytest.param("https://Api.Example.com:8443/in?sig=abc", "https://api.example.com:8443/…",
                  id="port-and-query"),
     pytest.param("https://api.example.com:443/x", "https://api.example.com/…",
                  id="default-port")],
)
def test_masked_form_is_scheme_and_host(url: str, shown: str) -> None:
    assert masked(origin(URL(url))) == shown


def test_unsealed_row_is_used_as_stored() -> None:
    row = {"url": "https://a.example.com/x", "url_ciphertext": None}
    assert url_of(row, KEYRING) == "https://a.example.com/x"
    sealed = {"url": None, "url_ciphertext": KEYRING.encrypt("https://b.example.com/y")}
    assert url_of(sealed, KEYRING) == "https://b.example.com/y"


async def test_slack_url_never_shown_nor_logged_and_deliveries_use_it(
    start: Start, admin_key: str, receiver: Receiver, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start()
    base = f"https://{RECEIVER_NAME}:{receiver.port}"
    body = {"name": "slack-secret", "kind": "slack", "events": ["message.rejected"],
            "url": f"{base}{SLACK_PATH}?{SECRET_QUERY}"}
    created = await client.post("/api/v1/webhooks", json=body, headers=bearer(admin_key))
    assert created.status == 201, await created.text()
    shown: dict[str, Any] = await created.json()
    assert shown["url"] == f"{base}/…" and shown["url_is_set"] is True
    path = f"/api/v1/webhooks/{shown['id']}"
    texts = [await created.text()]
    for response in (await client.get("/api/v1/webhooks", headers=bearer(admin_key)),
                     await client.get(path, headers=bearer(admin_key)),
                     await client.patch(path, json={"events": ["message.rejected",
                                                               "send.failed"]},
                                        headers=bearer(admin_key))):
        assert response.status == 200
        texts.append(await response.text())
    for text in texts:
        assert_hidden(text)
        assert base in text  # the origin is shown, the rest masked

    conn = await connect(database_url)
    try:
        stored = await conn.fetchrow(
            "SELECT url, url_ciphertext, url_origin FROM webhook_endpoints WHERE id = $1",
            shown["id"])
        audit = await conn.fetch("SELECT summary::text FROM admin_audit"
                                 " WHERE target = 'slack-secret'")
        await write_audit_batch(conn, [audit_event("reject")])  # as the milter would
    finally:
        await conn.close()
    assert stored["url"] is None and stored["url_origin"] == base
    assert KEYRING.decrypt(stored["url_ciphertext"]) == body["url"]
    assert_hidden(stored["url_ciphertext"])
    assert audit and all(SLACK_PATH not in row[0] for row in audit)
    assert await wait_for(lambda: len(receiver.delivered()) == 1)
    assert receiver.requests[0].path == f"{SLACK_PATH}?{SECRET_QUERY}"
    assert "text" in receiver.requests[0].body.decode()

    changed = await client.patch(path, json={"url": f"{base}/services/T0001/B0002/Other"},
                                 headers=bearer(admin_key))
    assert changed.status == 200
    assert_hidden(await changed.text())
    assert "Other" not in await changed.text()
    assert caplog.records, "the delivery was logged"
    assert_hidden(caplog.text)
    assert "Other" not in caplog.text


async def test_guard_refusal_at_delivery_names_only_the_host(
    pool: asyncpg.Pool, tls: Tls, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dns = StubDns({"hooks.turned-private.test": [["10.1.2.3"]]})
    async with pool.acquire() as conn:
        await add_endpoint(conn, "turned", f"https://hooks.turned-private.test{SLACK_PATH}",
                           ["message.rejected"], None, kind="slack")
    await write_audit(pool, audit_event("reject"))
    options = worker_options(tls, dns, max_attempts=1)
    async with running_worker(pool, options):
        assert await wait_for_async(lambda: _dead(pool))
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all("private" in m for m in refusals)
    assert "hooks.turned-private.test" in caplog.text
    assert_hidden(caplog.text)


async def _dead(db: asyncpg.Pool) -> bool:
    status: str | None = await db.fetchval("SELECT status FROM webhook_deliveries")
    return status == "dead"


async def test_plain_urls_from_before_are_sealed_at_start(
    start: Start, admin_key: str, database_url: str,
) -> None:
    url = f"https://legacy.example.com{SLACK_PATH}"
    conn = await connect(database_url)
    try:
        endpoint_id = await conn.fetchval(
            "INSERT INTO webhook_endpoints (name, url, url_origin, kind)"
            " VALUES ('legacy', $1, 'https://legacy.example.com', 'slack') RETURNING id", url)
        client = await start()
        stored = await conn.fetchrow(
            "SELECT url, url_ciphertext FROM webhook_endpoints WHERE id = $1", endpoint_id)
    finally:
        await conn.close()
    assert stored["url"] is None and KEYRING.decrypt(stored["url_ciphertext"]) == url
    response = await client.get(f"/api/v1/webhooks/{endpoint_id}", headers=bearer(admin_key))
    assert (await response.json())["url"] == "https://legacy.example.com/…"


async def test_without_a_key_plain_urls_and_templates_stay_and_are_counted(
    fresh_database_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A service run without a secret key seals nothing, and says how many stay plain."""
    conn = await connect(fresh_database_url)
    try:
        await conn.execute(
            "INSERT INTO webhook_endpoints (name, url, url_origin, kind, body_template)"
            " VALUES ('keyless', 'https://keyless.example.com/t', 'https://keyless.example.com',"
            " 'api_call', '{\"a\": 1}')")
        assert await seal_plain_urls(conn, Keyring(None)) == 0
        assert await seal_plain_templates(conn, Keyring(None)) == 0
        stored = await conn.fetchrow("SELECT url, body_template::text AS template"
                                     " FROM webhook_endpoints WHERE name = 'keyless'")
    finally:
        await conn.close()
    assert stored["url"] == "https://keyless.example.com/t"
    assert stored["template"] == '{"a": 1}'
    assert "webhooks: 1 endpoint URLs stay unencrypted: no secret key" in caplog.text
    assert "webhooks: 1 body templates stay unencrypted: no secret key" in caplog.text
