"""A rotated sender key sees the messages of the keys it replaced, however long its
line, and they (while they still work) its own; each message still names the key
that sent it. Idempotency keys and sending limits stay per key, so a key that leaked
cannot claim its successor's. Another sender key sees none of it."""

from __future__ import annotations

import uuid

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, body

SEND = "/api/v1/send-email"


async def _rotate(client: Client, admin_key: str, old: str) -> str:
    response = await client.post(f"/api/v1/keys/{old.split('_')[1]}/rotate",
                                 headers=bearer(admin_key), json={"grace_seconds": 3600})
    assert response.status == 201, await response.text()
    key: str = (await response.json())["key"]
    return key


async def _listed(client: Client, key: str) -> list[str]:
    listed = await client.get("/api/v1/messages", headers=bearer(key))
    return [m["id"] for m in (await listed.json())["messages"]]


async def test_a_line_of_keys_sees_its_messages(
    client: Client, mint_key: MintKey, admin_key: str
) -> None:
    first = await mint_key(Role.SENDER, ["*@example.com"])
    sent_first = await client.post(SEND, json=body(), headers=bearer(first))
    second = await _rotate(client, admin_key, first)
    third = await _rotate(client, admin_key, second)  # a line of three
    sent_third = await client.post(SEND, json=body(), headers=bearer(third))
    ids = {(await sent.json())["id"] for sent in (sent_first, sent_third)}
    for key in (first, second, third):
        for sent in (sent_first, sent_third):
            seen = await client.get(sent.headers["Location"], headers=bearer(key))
            assert seen.status == 200, await seen.text()
        assert ids <= set(await _listed(client, key))
    # Each names the key that sent it.
    answer = await (await client.get(sent_third.headers["Location"],
                                     headers=bearer(first))).json()
    assert answer["key_id"] == third.split("_")[1]
    stranger = await mint_key(Role.SENDER, ["*@example.com"])
    assert (await client.get(sent_first.headers["Location"],
                             headers=bearer(stranger))).status == 404
    assert not ids & set(await _listed(client, stranger))


async def test_idempotency_keys_stay_the_keys_own(
    client: Client, mint_key: MintKey, admin_key: str
) -> None:
    """A leaked predecessor cannot claim its successor's keys during the grace."""
    old = await mint_key(Role.SENDER, ["*@example.com"])
    new = await _rotate(client, admin_key, old)
    idempotency = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    by_old = await client.post(SEND, json=body(), headers=bearer(old) | idempotency)
    by_new = await client.post(SEND, json=body(), headers=bearer(new) | idempotency)
    assert by_new.status == 202 and "Idempotent-Replayed" not in by_new.headers
    assert (await by_new.json())["id"] != (await by_old.json())["id"]
