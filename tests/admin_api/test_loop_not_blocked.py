"""CPU-heavy policy work runs off the event loop: while one request compiles a slow
policy, the service keeps answering others (/healthz here)."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey, bearer

pytestmark = pytest.mark.postgres

# A small document that takes the engine about a second to compile: each
# '\pL{60}' pattern expands into a large automaton.
SLOW_POLICY = ("version: 1\nname: slow\nmode: enforce\npriority: 100\nrules:\n"
               + "".join(f"  - name: r{i}\n    when: {{subject: '\\pL{{60}}{i}'}}\n"
                         "    then: accept\n" for i in range(26)))
MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
KEY_USED = "SELECT last_used_at IS NOT NULL FROM api_keys WHERE name = $1"


async def test_healthz_is_answered_while_a_slow_policy_compiles(
        admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str) -> None:
    name = f"slow-{uuid.uuid4().hex[:8]}"
    key = await mint_key(Role.AUDITOR, name=name)
    form = aiohttp.FormData()
    form.add_field("policy", SLOW_POLICY)
    form.add_field("message", MESSAGE, filename="m.eml", content_type="message/rfc822")
    heavy = asyncio.create_task(
        admin_client.post("/api/v1/policies/test", data=form, headers=bearer(key)))
    conn = await connect(database_url)
    try:
        # The key is marked used when the request is admitted; from there the
        # handler reads the (small, buffered) form and goes straight to the engine.
        for _ in range(600):  # bounded: at most about 30 s
            if heavy.done() or await conn.fetchval(KEY_USED, name):
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    health = await admin_client.get("/healthz")
    assert health.status == 200
    assert not heavy.done(), "/healthz was answered only after the slow policy test"
    async with asyncio.timeout(120):  # a failure bound, not a measurement
        answer = await heavy
    assert answer.status == 200
    assert (await answer.json())["action"] == "accept"
