"""The message search and the suppression list as an application pages through them."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from postwarden_admin_api import audit_queries
from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, body


async def test_a_full_last_page_of_messages_says_no_page_follows(
    client: Client, mint_key: MintKey
) -> None:
    own = bearer(await mint_key(Role.SENDER, ["*@example.com"]))  # only these two messages
    for _ in range(2):
        sent = await client.post("/api/v1/send-email", json=body(), headers=own)
        assert sent.status == 202, await sent.text()
    page = await (await client.get("/api/v1/messages", params={"limit": "2"},
                                   headers=own)).json()
    assert len(page["messages"]) == 2
    assert page["next_cursor"] is None  # not a cursor to an empty page


async def test_a_full_last_page_of_suppressions_says_no_page_follows(
    client: Client, mint_key: MintKey
) -> None:
    operator = bearer(await mint_key(Role.OPERATOR))
    prefix = f"zz{uuid.uuid4().hex}"  # sorts after whatever else the database holds
    for n in range(2):
        added = await client.post("/api/v1/suppressions", headers=operator,
                                  json={"address": f"{prefix}{n}@example.org"})
        assert added.status == 201, await added.text()
    page = await (await client.get("/api/v1/suppressions", headers=operator, params={
        "after": f"{prefix}", "limit": "2"})).json()
    assert [s["address"] for s in page["suppressions"]] == [
        f"{prefix}0@example.org", f"{prefix}1@example.org"]
    assert page["next_after"] is None


async def test_every_bad_search_parameter_is_listed_in_one_answer(
    client: Client, sender: dict[str, str]
) -> None:
    found = await client.get("/api/v1/messages", headers=sender, params={
        "status": "sent", "limit": "0", "to": "nobody", "sender": "a@example.com",
        "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z",
    })
    assert found.status == 422
    details = (await found.json())["error"]["details"]
    assert {d["field"]: d["message"] for d in details} == {
        "status": "expected one of queued, relayed, untracked, delivered, partially_delivered, "
                  "failed",
        "to": "expected local@domain with a plain ASCII local part",
        "limit": "expected 1..500",
        "since": "must be before until",
        "sender": "unknown parameter; expected one of since, until, status, from, to, tag, "
                  "message_id, queue_id, cursor, limit",
    }


async def test_a_message_cursor_is_refused_with_other_filters_or_another_key(
    client: Client, mint_key: MintKey
) -> None:
    """Else the next page of one search started partway through another's result."""
    own = bearer(await mint_key(Role.SENDER, ["*@example.com"]))
    for _ in range(2):
        sent = await client.post("/api/v1/send-email", json=body(), headers=own)
        assert sent.status == 202, await sent.text()
    first = await (await client.get("/api/v1/messages", params={"limit": "1"},
                                    headers=own)).json()
    cursor = first["next_cursor"]
    auditor = bearer(await mint_key(Role.AUDITOR))  # sees every line's messages
    for key, params in ((own, {"status": "queued"}), (own, {"to": "rcpt@example.org"}),
                        (auditor, {})):
        refused = await client.get("/api/v1/messages", headers=key,
                                   params={"cursor": cursor, "limit": "1", **params})
        assert refused.status == 422, await refused.text()
        assert (await refused.json())["error"]["code"] == "cursor_mismatch"
    same = await client.get("/api/v1/messages", headers=own,
                            params={"cursor": cursor, "limit": "5"})  # another size is fine
    assert same.status == 200, await same.text()
    assert len((await same.json())["messages"]) >= 1


async def test_a_message_search_is_cut_at_the_statement_timeout(
    client: Client, sender: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the audit reads are: it ran as long as it took (here: behind a lock), holding
    a connection of the pool the sends need."""
    monkeypatch.setattr(audit_queries, "STATEMENT_TIMEOUT_MS", 200)
    blocker = await connect(database_url)
    try:
        await blocker.execute("BEGIN; LOCK TABLE outbound_messages IN ACCESS EXCLUSIVE MODE")
        async with asyncio.timeout(10):
            found = await client.get("/api/v1/messages", headers=sender)
    finally:
        await blocker.close()
    assert found.status == 503, await found.text()
    assert (await found.json())["error"]["code"] == "query_timeout"
