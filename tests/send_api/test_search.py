"""Searching sent messages: address filters as the send API parses addresses, and pages."""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg
import pytest

from postwarden_admin_api.context import Role
from postwarden_admin_api.runtime_settings import RUNTIME
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, SetRuntime, body


@pytest.fixture
async def idn_sender(client: Client, set_runtime: SetRuntime, mint_key: MintKey) -> dict[str, str]:
    """A key that may send as *@bücher.example (allowed globally too)."""
    await set_runtime(allowed_sender_addresses=["*@example.com", "*@bücher.example"])
    client.app[RUNTIME].invalidate()
    return bearer(await mint_key(Role.SENDER, ["*@bücher.example"]))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("to", "{local}@bücher.example", id="to-u-label"),
        pytest.param("to", "{LOCAL}@XN--BCHER-KVA.example", id="to-a-label-upper-case"),
        pytest.param("to", "Someone <{local}@xn--bcher-kva.example>", id="to-name-addr"),
        pytest.param("from", "shop@bücher.example", id="from-u-label"),
        pytest.param("from", "Shop <SHOP@xn--bcher-kva.example>", id="from-name-addr"),
    ],
)
async def test_address_filters_compare_parsed_addresses(
    client: Client, idn_sender: dict[str, str], name: str, value: str
) -> None:
    local = uuid.uuid4().hex[:10]
    sent = await client.post("/api/v1/send-email", headers=idn_sender, json=body(
        to=[f"{local}@bücher.example"], tags=[local], **{"from": "Shop <shop@bücher.example>"}))
    assert sent.status == 202, await sent.text()
    found = await client.get("/api/v1/messages", headers=idn_sender, params={
        name: value.format(local=local, LOCAL=local.upper()), "tag": local})
    assert found.status == 200, await found.text()
    assert [m["id"] for m in (await found.json())["messages"]] == [(await sent.json())["id"]]


@pytest.mark.parametrize("name", ["to", "from"])
async def test_an_address_filter_that_is_no_address_is_a_422(
    client: Client, sender: dict[str, str], name: str
) -> None:
    found = await client.get("/api/v1/messages", headers=sender, params={name: "a@xn--zz.com"})
    assert found.status == 422
    error = (await found.json())["error"]
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == [name]


async def test_the_cursor_works_pasted_into_a_url_as_given(
    client: Client, mint_key: MintKey
) -> None:
    own = bearer(await mint_key(Role.SENDER, ["*@example.com"]))  # a key with only these messages
    sent = []
    for _ in range(3):
        response = await client.post("/api/v1/send-email", json=body(), headers=own)
        sent.append((await response.json())["id"])
    seen: list[str] = []
    url = "/api/v1/messages?limit=2"
    while url:
        response = await client.get(url, headers=own)  # the query string is not re-encoded
        assert response.status == 200, await response.text()
        page = await response.json()
        seen += [m["id"] for m in page["messages"]]
        cursor = page["next_cursor"]
        assert cursor is None or re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
        url = f"/api/v1/messages?limit=2&cursor={cursor}" if cursor else ""
    assert seen == sent[::-1]


async def test_a_message_is_found_by_its_message_id_or_postfix_queue_id(
    client: Client, sender: dict[str, str], pool: asyncpg.Pool
) -> None:
    """As a bounce or a recipient quotes the Message-ID (with or without its angle
    brackets), and as Postfix's log names the queue file (case told apart)."""
    tag = uuid.uuid4().hex[:10]
    answers = []
    for _ in range(2):
        sent = await client.post("/api/v1/send-email", headers=sender, json=body(tags=[tag]))
        assert sent.status == 202, await sent.text()
        answers.append(await sent.json())
    first, second = answers
    queue_ids: dict[str, str] = {}
    for _ in range(200):  # the app's relay hands them to the test's SMTP server
        queue_ids = dict(await pool.fetch(
            "SELECT id::text, queue_id FROM outbound_messages WHERE id = ANY($1::uuid[]) "
            "AND queue_id IS NOT NULL", [first["id"], second["id"]]))
        if len(queue_ids) == 2:
            break
        await asyncio.sleep(0.05)
    queue_id = queue_ids[second["id"]]

    async def found(**params: str) -> list[str]:
        answer = await client.get("/api/v1/messages", headers=sender,
                                  params={**params, "tag": tag})
        assert answer.status == 200, await answer.text()
        return [m["id"] for m in (await answer.json())["messages"]]

    assert first["message_id"].startswith("<")
    assert await found(message_id=first["message_id"]) == [first["id"]]
    assert await found(message_id=first["message_id"].strip("<>")) == [first["id"]]
    assert await found(queue_id=queue_id) == [second["id"]]
    assert queue_id.swapcase() != queue_id
    assert await found(queue_id=queue_id.swapcase()) == []
    assert await found(message_id=first["message_id"], queue_id=queue_id) == []


async def test_a_message_id_not_of_ours_finds_nothing(
    client: Client, sender: dict[str, str]
) -> None:
    for message_id in ("<someone@else.example>", "<" + "0" * 32 + "@example.com>", "x"):
        answer = await client.get("/api/v1/messages", headers=sender,
                                  params={"message_id": message_id})
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["messages"] == []


async def test_empty_or_impossible_exact_filters_are_a_422_listed_together(
    client: Client, sender: dict[str, str]
) -> None:
    """?tag=, ?queue_id= and ?message_id= answered 200 with no message where ?to= is a
    422; so did a tag or a queue id no message can have."""
    for params, fields in [({"tag": "", "queue_id": "", "message_id": "", "to": ""},
                            ["tag", "message_id", "queue_id", "to"]),
                           ({"tag": "needs review", "queue_id": "4Xy Z"},
                            ["tag", "queue_id"])]:
        found = await client.get("/api/v1/messages", headers=sender, params=params)
        assert found.status == 422, await found.text()
        error = (await found.json())["error"]
        assert error["code"] == "validation_failed"
        assert sorted(d["field"] for d in error["details"]) == sorted(fields)
