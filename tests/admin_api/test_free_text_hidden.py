"""Free text a client stores for others to read (a revision's comment, a suppression's
detail) holds no control, invisible or bidi character, as a key's name does not."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.admin_api.test_policies import YAML, policy
from tests.admin_api.test_rules import block
from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]
# An escape sequence (clears a terminal), a C1 control (CSI), a tab, a line break, a
# right-to-left override, an isolate, a zero-width space, a line separator.
HIDDEN = ["\x1b[2J", "\x9b", "\t", "\n", "\u202e", "\u2066", "\u200b", "\u2028"]
REFUSED = "control, invisible and bidi characters are not allowed"


def _unique() -> str:
    return uuid.uuid4().hex[:8]


async def _upload(client: Client, key: str, text: str) -> ClientResponse:
    return await client.post("/api/v1/policies", data=policy(f"p{_unique()}").encode(),
                             headers={**bearer(key), **YAML}, params={"comment": text})


async def _rule(client: Client, key: str, text: str) -> ClientResponse:
    return await client.post("/api/v1/rules", headers=bearer(key), json={
        "rule": block(f"r{_unique()}", "bad@evil.test"), "comment": text})


async def _suppression(client: Client, key: str, text: str) -> ClientResponse:
    return await client.post("/api/v1/suppressions", headers=bearer(key), json={
        "address": f"s{_unique()}@example.org", "detail": text})


Store = Callable[[Client, str, str], Awaitable[ClientResponse]]
FIELDS: list[tuple[Store, str]] = [(_upload, "comment"), (_rule, "comment"),
                                   (_suppression, "detail")]
FIELD_IDS = ["upload-comment", "rules-comment", "suppression-detail"]


@pytest.mark.parametrize("hidden", HIDDEN, ids=repr)
@pytest.mark.parametrize(("store", "field"), FIELDS, ids=FIELD_IDS)
async def test_a_hidden_character_in_free_text_is_refused(
    admin_client: Client, admin_key: str, store: Store, field: str, hidden: str
) -> None:
    # They were stored and shown as given: in `policy revisions`, the suppression list,
    # the admin audit log (an escape sequence acts on the terminal that prints it,
    # "done\u202eenod" reads otherwise than it is).
    response = await store(admin_client, admin_key, f"done{hidden}now")
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["details"] == [
        {"field": field, "message": REFUSED}]


@pytest.mark.parametrize(("store", "field"), FIELDS, ids=FIELD_IDS)
async def test_free_text_in_any_script_is_stored(
    admin_client: Client, admin_key: str, store: Store, field: str
) -> None:
    text = "incident 42 – עברית, 日本語 ✓"
    response = await store(admin_client, admin_key, text)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body.get("revision", body)[field] == text
