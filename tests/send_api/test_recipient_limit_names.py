"""A 429 ``recipient_rate_limited`` names the fields whose recipient is at its daily
limit, so that an app sending to many knows which one to drop; what it names is the
caller's own input (its fields), and the refused request still counts nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from postwarden_admin_api.context import Role
from postwarden_admin_api.runtime_settings import RUNTIME
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, SetRuntime, body


def _addresses(count: int) -> list[str]:
    # The per-recipient counters are shared by every key and test of the database.
    return [f"{uuid.uuid4().hex[:12]}@example.org" for _ in range(count)]


@pytest.fixture
async def one_a_day(
    client: Client, set_runtime: SetRuntime, mint_key: MintKey
) -> AsyncIterator[dict[str, str]]:
    """A sender key, with each recipient allowed one message a day (put back afterwards)."""
    await set_runtime(outbound_per_recipient_per_day=1)
    client.app[RUNTIME].invalidate()
    yield bearer(await mint_key(Role.SENDER, ["app@example.com"]))
    await set_runtime(outbound_per_recipient_per_day=None)
    client.app[RUNTIME].invalidate()


async def _send(client: Client, key: dict[str, str], **fields: Any) -> Any:
    return await client.post("/api/v1/send-email", headers=key, json=body(**fields))


def _named(field: str) -> dict[str, Any]:
    return {"field": field, "code": "recipient_rate_limited",
            "message": "this recipient has had its limit of messages today",
            "kind": "recipient_per_day", "limit": 1}


async def test_the_recipient_at_its_limit_is_named_by_its_field(
    client: Client, one_a_day: dict[str, str]
) -> None:
    first, full, last = _addresses(3)
    assert (await _send(client, one_a_day, to=[full])).status == 202
    refused = await _send(client, one_a_day, to=[first, full, last])
    assert refused.status == 429
    error = (await refused.json())["error"]
    assert error["code"] == "recipient_rate_limited"
    assert error["details"] == [_named("to[1]")]
    assert int(refused.headers["Retry-After"]) > 0
    # Nothing was counted for the refused request: the others may still have their one.
    assert (await _send(client, one_a_day, to=[first, last])).status == 202


async def test_every_field_of_every_recipient_at_its_limit_is_named(
    client: Client, one_a_day: dict[str, str]
) -> None:
    free, full, other_full = _addresses(3)
    assert (await _send(client, one_a_day, to=[full, other_full])).status == 202
    refused = await _send(client, one_a_day, to=[free, full.upper()],
                          cc=[other_full], bcc=[f"Name <{full}>"])
    assert refused.status == 429
    assert (await refused.json())["error"]["details"] == [
        _named("to[1]"), _named("cc[0]"), _named("bcc[0]"),
    ]


async def test_a_limit_reached_through_another_key_names_no_address(
    client: Client, one_a_day: dict[str, str], mint_key: MintKey
) -> None:
    """The other key's request is not echoed: only the caller's own field is named."""
    other_key = bearer(await mint_key(Role.SENDER, ["app@example.com"]))
    shared, theirs, mine = _addresses(3)
    assert (await _send(client, other_key, to=[shared, theirs])).status == 202
    refused = await _send(client, one_a_day, to=[mine], cc=[shared])
    assert refused.status == 429
    answer = await refused.text()
    assert "@" not in answer
    assert (await refused.json())["error"]["details"] == [_named("cc[0]")]
