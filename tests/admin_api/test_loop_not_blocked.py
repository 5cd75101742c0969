"""CPU-heavy policy work runs off the event loop: while one request is in the policy
engine, the service keeps answering others (/healthz here). The engine's work is held
at a gate until /healthz has answered, so the order is the test's, not the machine's:
were the work on the loop, the gate would hold the loop and /healthz would wait."""
from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import routes_policy_test
from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

pytestmark = pytest.mark.postgres

POLICY = ("version: 1\nname: gated\nmode: enforce\npriority: 100\nrules:\n"
          "  - name: hi\n    when: {subject: '(?i)hi'}\n    then: accept\n")
MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
GATE_SECONDS = 30  # a failure bound: on the loop, the gate holds it this long


async def test_healthz_is_answered_while_the_engine_works(
        admin_client: TestClient[Any, Any], mint_key: MintKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gate, entered = threading.Event(), threading.Event()
    verdict = routes_policy_test._verdict

    def gated(*args: Any) -> Any:
        entered.set()
        gate.wait(GATE_SECONDS)
        return verdict(*args)

    monkeypatch.setattr(routes_policy_test, "_verdict", gated)
    name = f"gated-{uuid.uuid4().hex[:8]}"
    key = await mint_key(Role.AUDITOR, name=name)
    form = aiohttp.FormData()
    form.add_field("policy", POLICY)
    form.add_field("message", MESSAGE, filename="m.eml", content_type="message/rfc822")
    heavy = asyncio.create_task(
        admin_client.post("/api/v1/policies/test", data=form, headers=bearer(key)))
    try:
        assert await asyncio.to_thread(entered.wait, GATE_SECONDS + 30)
        async with asyncio.timeout(GATE_SECONDS + 30):  # a failure bound
            health = await admin_client.get("/healthz")
        assert health.status == 200
        assert not heavy.done(), "/healthz was answered only after the engine's work"
    finally:
        gate.set()
    async with asyncio.timeout(120):  # a failure bound, not a measurement
        answer = await heavy
    assert answer.status == 200
    assert (await answer.json())["action"] == "accept"
