"""The send API through aiohttp's test client, with a loopback SMTP server as the relay."""

from __future__ import annotations

import asyncio
import base64
import email
import email.header
import email.policy
import email.utils
import logging
import uuid
from collections.abc import Callable

import pytest
from multidict import CIMultiDict

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key
from postwarden_admin_api.runtime_settings import RUNTIME
from postwarden_admin_api.secrets import Keyring
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for
from tests.fixtures.scripted_smtp import Scripted

from .conftest import Client, SetRuntime, body, relayed


async def refresh(client: Client) -> None:
    client.app[RUNTIME].invalidate()


async def test_accepted_message_is_queued_relayed_and_readable(
    client: Client, sender: dict[str, str], smtp_server: tuple[Scripted, int],
) -> None:
    response = await client.post("/api/v1/send-email", json=body(), headers=sender)
    assert response.status == 202, await response.text()
    accepted = await response.json()
    assert accepted["status"] == "queued"
    assert accepted["message_id"].endswith("@example.com>")
    location = response.headers["Location"]
    assert location == f"/api/v1/messages/{accepted['id']}"
    for _ in range(200):
        message = await (await client.get(location, headers=sender)).json()
        if message["status"] == "relayed":
            break
        await asyncio.sleep(0.05)
    assert message["status"] == "relayed" and message["queue_id"]
    assert message["recipients"][0]["status"] == "relayed"
    assert [e["event"] for e in message["events"]] == ["accepted", "relayed"]
    handler, _ = smtp_server
    assert any(accepted["message_id"].encode() in data for _, _, data in handler.received)
    found = await (await client.get("/api/v1/messages?status=relayed", headers=sender)).json()
    assert accepted["id"] in [m["id"] for m in found["messages"]]


@pytest.mark.parametrize(
    ("key_senders", "from_address"),
    [
        pytest.param(["app@example.com"], "other@example.com", id="not-the-keys"),
        pytest.param(["*@evil.example"], "x@evil.example", id="not-global"),
        pytest.param([], "app@example.com", id="key-without-senders"),
    ],
)
async def test_disallowed_senders_get_403(
    client: Client, mint_key: MintKey, key_senders: list[str], from_address: str
) -> None:
    key = bearer(await mint_key(Role.SENDER, key_senders))
    response = await client.post("/api/v1/send-email", json=body(**{"from": from_address}),
                                 headers=key)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "sender_not_allowed"


async def test_allowed_senders_written_with_the_root_dot_allow_their_domain(
    client: Client, mint_key: MintKey, set_runtime: SetRuntime
) -> None:
    # The key and the setting took "example.com." (DNS's absolute name), and then
    # matched no sender: every send was 403 sender_not_allowed.
    await set_runtime(allowed_sender_addresses=["*@Example.COM."])
    client.app[RUNTIME].invalidate()
    key = bearer(await mint_key(Role.SENDER, ["app@example.com."]))
    response = await client.post("/api/v1/send-email", json=body(), headers=key)
    assert response.status == 202, await response.text()
    other = await client.post("/api/v1/send-email", json=body(**{"from": "x@example.com"}),
                              headers=key)
    assert other.status == 403


async def test_other_roles_may_not_send(client: Client, mint_key: MintKey) -> None:
    key = bearer(await mint_key(Role.OPERATOR, ["*@example.com"]))
    response = await client.post("/api/v1/send-email", json=body(), headers=key)
    assert response.status == 403


async def test_all_field_errors_come_together(client: Client, sender: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/send-email", headers=sender,
        json=body(to=["bad"], subject="", text=None, headers={"Bcc": "x@evil.example"}),
    )
    assert response.status == 422
    error = (await response.json())["error"]
    assert {d["code"] for d in error["details"]} == {
        "invalid_recipient", "invalid_subject", "empty_body", "invalid_header"
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # JSON's escape of half a character: what no encoder (Postgres's jsonb, the
        # email package) takes, in a field or in metadata, which reaches only Postgres.
        (b'{"from": "app@example.com", "to": "b@example.org", "subject": "s", "text": "t",'
         b' "metadata": {"k": "\\ud800"}}', "lone surrogate"),
        (b'{"metadata": {"\\udfff": "v"}}', "lone surrogate"),
        (b'{"metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "nested too deeply"),
    ],
    ids=["surrogate-value", "surrogate-key", "deep-nesting"],
)
async def test_a_body_no_encoder_takes_is_a_400_not_a_500(
    client: Client, sender: dict[str, str], raw: bytes, message: str
) -> None:
    response = await client.post("/api/v1/send-email", data=raw,
                                 headers={**sender, "Content-Type": "application/json"})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_json" and message in error["message"]


async def test_an_escaped_pair_of_surrogates_is_a_character(
    client: Client, sender: dict[str, str]
) -> None:
    raw = (b'{"from": "app@example.com", "to": "b@example.org", "subject": "s",'
           b' "text": "\\ud83d\\ude00", "metadata": {"mood": "\\ud83d\\ude00"}}')
    response = await client.post("/api/v1/send-email", data=raw,
                                 headers={**sender, "Content-Type": "application/json"})
    assert response.status == 202, await response.text()


async def test_a_display_name_with_specials_is_sent_as_written(
    client: Client, sender: dict[str, str], smtp_server: tuple[Scripted, int]
) -> None:
    # The email package folded it into other mailboxes (a 422), or into a header
    # section no parser read back (a 500): it is written as encoded words now.
    # (From's name may not hold an address: it would read as the sender.)
    name = "Helpdesk: Ticket #12345; Priority: High; Assigned To someone-long-name@example.com"
    response = await client.post("/api/v1/send-email", headers=sender, json=body(**{
        "from": f'"{name.partition("@")[0]}" <app@example.com>',
        "to": [f'"{name}" <x@example.org>']}))
    assert response.status == 202
    content = await relayed(smtp_server, (await response.json())["message_id"])
    message = email.message_from_bytes(content, policy=email.policy.compat32)
    [(shown, address)] = email.utils.getaddresses([str(message["To"])])
    decoded = str(email.header.make_header(email.header.decode_header(shown)))
    assert (decoded, address) == (name, "x@example.org")  # as mail readers decode it


async def test_idempotency_key_semantics(client: Client, sender: dict[str, str]) -> None:
    headers = {**sender, "Idempotency-Key": f"order-{uuid.uuid4()}"}
    request = body()
    first = await client.post("/api/v1/send-email", json=request, headers=headers)
    second = await client.post("/api/v1/send-email", json=request, headers=headers)
    assert (first.status, second.status) == (202, 202)
    assert await first.json() == await second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Location"] == first.headers["Location"]
    changed = await client.post("/api/v1/send-email", json=body(), headers=headers)
    assert changed.status == 422
    assert (await changed.json())["error"]["code"] == "idempotency_key_reused"
    too_long = {**sender, "Idempotency-Key": "x" * 256}
    response = await client.post("/api/v1/send-email", json=request, headers=too_long)
    assert response.status == 422


async def test_a_replay_answers_the_same_bytes_as_the_first_answer(
    client: Client, sender: dict[str, str]
) -> None:
    # The stored answer came back in jsonb's key order (id, status, message_id): a
    # client comparing or hashing the raw answer saw another one.
    headers = {**sender, "Idempotency-Key": f"bytes-{uuid.uuid4()}"}
    request = body()
    first = await client.post("/api/v1/send-email", json=request, headers=headers)
    again = await client.post("/api/v1/send-email", json=request, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()
    assert list(await first.json()) == ["id", "message_id", "status"]  # as documented


async def test_an_idempotency_key_given_twice_is_refused(
    client: Client, sender: dict[str, str]
) -> None:
    """Which of two a retry would repeat is anyone's guess: neither is taken."""
    twice = CIMultiDict(sender)
    twice.add("Idempotency-Key", f"a-{uuid.uuid4()}")
    twice.add("Idempotency-Key", f"b-{uuid.uuid4()}")
    response = await client.post("/api/v1/send-email", json=body(), headers=twice)
    assert response.status == 422
    error = (await response.json())["error"]
    assert [(d["field"], d["message"]) for d in error["details"]] == [
        ("Idempotency-Key", "given more than once")]


async def test_a_large_request_is_worked_off_the_event_loop(
    client: Client, sender: dict[str, str], on_threads: list[str],
) -> None:
    content = base64.b64encode(b"%PDF-1.7\n" + bytes(300_000)).decode()
    request = body(attachments=[
        {"filename": "r.pdf", "content_type": "application/pdf", "content": content}])
    headers = {**sender, "Idempotency-Key": f"large-{uuid.uuid4()}"}
    first = await client.post("/api/v1/send-email", json=request, headers=headers)
    assert first.status == 202, await first.text()
    body_work = {"_json_object", "request_digest", "parse_request", "build_message"}
    assert body_work <= set(on_threads)
    on_threads.clear()
    small = await client.post("/api/v1/send-email", json=body(), headers=sender)
    assert small.status == 202 and not body_work & set(on_threads)  # small ones stay
    again = await client.post("/api/v1/send-email", json=request, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()


async def test_a_refused_request_releases_its_idempotency_key(
    client: Client, sender: dict[str, str]
) -> None:
    headers = {**sender, "Idempotency-Key": f"retry-{uuid.uuid4()}"}
    refused = await client.post("/api/v1/send-email", json=body(subject=""), headers=headers)
    assert refused.status == 422
    fixed = await client.post("/api/v1/send-email", json=body(), headers=headers)
    assert fixed.status == 202


async def test_suppressions_block_recipients(
    client: Client, sender: dict[str, str], mint_key: MintKey
) -> None:
    operator = bearer(await mint_key(Role.OPERATOR))
    address = f"blocked-{uuid.uuid4().hex[:6]}@example.org"
    added = await client.post("/api/v1/suppressions", json={"address": address.upper()},
                              headers=operator)
    assert added.status == 201
    assert (await added.json())["reason"] == "manual"
    again = await client.post("/api/v1/suppressions", json={"address": address},
                              headers=operator)
    assert again.status == 200
    listed = await (await client.get("/api/v1/suppressions", headers=operator)).json()
    assert address in [s["address"] for s in listed["suppressions"]]
    refused = await client.post("/api/v1/send-email", headers=sender,
                                json=body(to=["ok@example.org"], cc=[address]))
    assert refused.status == 422
    error = (await refused.json())["error"]
    assert error["code"] == "recipient_suppressed" and error["details"][0]["field"] == "cc[0]"
    lone = await client.post("/api/v1/send-email", headers=sender,
                             json=body(to=["ok@example.org"], cc=address))
    assert (await lone.json())["error"]["details"][0]["field"] == "cc"  # as sent: no index
    assert (await client.post("/api/v1/suppressions", json={"address": "x"},
                              headers=sender)).status == 403
    deleted = await client.delete(f"/api/v1/suppressions?address={address}", headers=operator)
    assert deleted.status == 200
    missing = await client.delete(f"/api/v1/suppressions?address={address}", headers=operator)
    assert missing.status == 404
    sent = await client.post("/api/v1/send-email", headers=sender, json=body(to=[address]))
    assert sent.status == 202


async def test_outbound_disabled_and_limits(
    client: Client, sender: dict[str, str], set_runtime: SetRuntime
) -> None:
    await set_runtime(outbound_enabled=False)
    await refresh(client)
    try:
        response = await client.post("/api/v1/send-email", json=body(), headers=sender)
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "outbound_disabled"
    finally:
        await set_runtime(outbound_enabled=True)
        await refresh(client)
    await set_runtime(outbound_max_recipients=2)
    await refresh(client)
    try:
        response = await client.post(
            "/api/v1/send-email", headers=sender,
            json=body(to=["a@example.org", "b@example.org"], bcc=["c@example.org"]),
        )
        assert response.status == 422
        assert (await response.json())["error"]["code"] == "too_many_recipients"
    finally:
        await set_runtime(outbound_max_recipients=None)
    await set_runtime(outbound_per_recipient_per_day=1)
    await refresh(client)
    try:
        target = body()
        assert (await client.post("/api/v1/send-email", json=target, headers=sender)).status == 202
        again = await client.post("/api/v1/send-email", json=target, headers=sender)
        assert again.status == 429
        assert (await again.json())["error"]["code"] == "recipient_rate_limited"
        assert int(again.headers["Retry-After"]) > 0
    finally:
        await set_runtime(outbound_per_recipient_per_day=None)
        await refresh(client)


async def test_message_too_large(
    client: Client, sender: dict[str, str], set_runtime: SetRuntime
) -> None:
    await set_runtime(max_message_bytes=2048)
    await refresh(client)
    try:
        response = await client.post("/api/v1/send-email", json=body(text="é" * 1000),
                                     headers=sender)
        assert response.status == 413
        error = (await response.json())["error"]
        assert error["code"] == "message_too_large"
        # No field makes the size alone: the detail names none.
        assert error["details"] == [{"code": "message_too_large", "message":
                                     "the built message, with what Postfix adds to it (its "
                                     "Received header, the envelope), is larger than 2048 bytes"}]
        response = await client.post("/api/v1/send-email", json=body(text="x" * 3000),
                                     headers=sender)
        assert (await response.json())["error"]["code"] == "body_too_large"
    finally:
        await set_runtime(max_message_bytes=None)
        await refresh(client)


async def test_relay_not_configured_is_a_503(
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    sender: dict[str, str], set_runtime: SetRuntime, caplog: pytest.LogCaptureFixture,
) -> None:
    await set_runtime(allowed_sender_addresses=["*@example.com"])
    client = await aiohttp_client(create_app(make_admin_settings(relay_host="")))
    with caplog.at_level(logging.INFO, logger="postwarden_admin_api.send"):
        response = await client.post("/api/v1/send-email", json=body(), headers=sender)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "relay_not_configured"
    assert "outcome=refused error=relay_not_configured" in caplog.text


async def test_attempts_are_logged_without_body_or_key(
    client: Client, mint_key: MintKey, caplog: pytest.LogCaptureFixture
) -> None:
    key = await mint_key(Role.SENDER, ["*@example.com"])
    secret_text = f"the body {uuid.uuid4()}"
    with caplog.at_level(logging.INFO, logger="postwarden_admin_api.send"):
        ok = await client.post("/api/v1/send-email", headers=bearer(key), json=body(
            to=["alice@example.org"], text=secret_text))
        refused = await client.post("/api/v1/send-email", headers=bearer(key), json=body(
            **{"from": "x@evil.example"}, to=["bob@example.org\r\nInjected: 1"]))
    assert (ok.status, refused.status) == (202, 403)
    attempts = [r.getMessage() for r in caplog.records if "send attempt" in r.getMessage()]
    assert len(attempts) == 2
    key_id = key.split("_")[1]
    assert f"key={key_id}" in attempts[0] and "outcome=accepted" in attempts[0]
    assert "a***@example.org" in attempts[0] and "recipients=1" in attempts[0]
    assert "outcome=refused error=sender_not_allowed" in attempts[1]
    assert "\r" not in attempts[1] and "\n" not in attempts[1]
    assert secret_text not in caplog.text and key not in caplog.text
    assert "alice@" not in caplog.text


async def test_senders_see_only_their_own_messages(
    client: Client, sender: dict[str, str], mint_key: MintKey
) -> None:
    tag = f"t-{uuid.uuid4().hex}"  # this test's messages, whatever else the database holds
    response = await client.post("/api/v1/send-email", json=body(tags=[tag]), headers=sender)
    assert response.status == 202, await response.text()
    location = response.headers["Location"]
    other = bearer(await mint_key(Role.SENDER, ["*@example.com"]))
    auditor = bearer(await mint_key(Role.AUDITOR))
    assert (await client.get(location, headers=other)).status == 404
    assert (await client.get(location, headers=auditor)).status == 200
    assert (await client.get("/api/v1/messages/not-a-uuid", headers=auditor)).status == 404
    mine = await (await client.get("/api/v1/messages", params={"tag": tag},
                                    headers=sender)).json()
    theirs = await (await client.get("/api/v1/messages", params={"tag": tag},
                                      headers=other)).json()
    assert len(mine["messages"]) == 1 and theirs["messages"] == []

    # A second message of its own, so the auditor's walk has two pages to turn.
    response = await client.post("/api/v1/send-email", json=body(tags=[tag]), headers=other)
    assert response.status == 202, await response.text()
    own = {mine["messages"][0]["id"], (await response.json())["id"]}
    page = await (await client.get("/api/v1/messages", params={"tag": tag, "limit": "1"},
                                    headers=auditor)).json()
    assert len(page["messages"]) == 1 and page["next_cursor"]
    following = await client.get("/api/v1/messages", params={
        "tag": tag, "limit": "1", "cursor": page["next_cursor"]}, headers=auditor)
    assert following.status == 200
    second = (await following.json())["messages"]
    assert len(second) == 1
    assert {page["messages"][0]["id"], second[0]["id"]} == own


async def test_the_openapi_document_lists_the_send_routes(client: Client) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/send-email"]["post"]["x-roles"] == ["admin", "sender"]
    assert "delete" in document["paths"]["/api/v1/suppressions"]
    assert "SendEmail" in document["components"]["schemas"]


async def test_a_recipient_hash_key_this_instance_cannot_decrypt_stops_its_sending(
    aiohttp_client: AiohttpClient, fresh_database_url: str,
) -> None:
    """With another key its per-recipient counts would go apart from the others'; the
    rest of the service runs on."""
    elsewhere = Keyring(bytes(range(32)))  # another instance's secret key
    conn = await connect(fresh_database_url)
    try:
        await conn.execute(
            "INSERT INTO runtime_settings (name, value_ciphertext) "
            "VALUES ('recipient_hash_key', $1) "
            "ON CONFLICT (name) DO UPDATE SET value_ciphertext = $1, value = NULL",
            elsewhere.encrypt("shared-hash-secret"))
        sender = bearer(await create_key(conn, Role.SENDER, "app", ["app@example.com"]))
    finally:
        await conn.close()
    client = await aiohttp_client(create_app(settings_for(fresh_database_url)))
    response = await client.post("/api/v1/send-email", json=body(), headers=sender)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "hash_key_unreadable"
    assert (await client.get("/api/v1/messages", headers=sender)).status == 200
