"""An api_call endpoint's headers are write-only secrets (an ``Authorization`` token
for the receiver's API). An operator who points the endpoint at a server of theirs
must not receive them: a new URL needs the headers given again (or ``null``), and the
body template (it may hold a credential too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.admin_api.test_conflict_codes import error_code
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import RECEIVER_NAME, Start, StubDns
from .receiver import Receiver, Tls, wait_for
from .support import raise_reject

pytestmark = pytest.mark.postgres

TOKEN = "Bearer crm-s3cr3t-token"
TEMPLATE = {"event": "{{ type }}"}
ATTACKER_NAME = "rebind.example.test"  # in the test certificate; the attacker's server


@pytest.fixture
async def attacker(tls: Tls, dns: StubDns) -> AsyncIterator[Receiver]:
    server = Receiver("127.0.0.2", tls)
    await server.start()
    dns.answers[ATTACKER_NAME] = [["127.0.0.2"]]
    try:
        yield server
    finally:
        await server.stop()


@dataclass(frozen=True)
class Crm:
    client: TestClient[Any, Any]
    hook: str  # the endpoint's path: an api_call at the receiver with the admin's token


@pytest.fixture
async def crm(start: Start, admin_key: str, receiver: Receiver, database_url: str) -> Crm:
    """The only endpoint in the module's database."""
    conn = await connect(database_url)
    try:
        await conn.execute("DELETE FROM webhook_endpoints")
    finally:
        await conn.close()
    client = await start()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "crm", "url": f"https://{RECEIVER_NAME}:{receiver.port}/in",
        "kind": "api_call", "events": ["message.rejected"],
        "headers": {"Authorization": TOKEN}, "body_template": TEMPLATE})
    assert created.status == 201, await created.text()
    return Crm(client, f"/api/v1/webhooks/{(await created.json())['id']}")


async def test_new_url_without_the_headers_is_refused_and_the_token_stays_home(
    crm: Crm, mint_key: MintKey, receiver: Receiver, attacker: Receiver, database_url: str,
) -> None:
    client, hook = crm.client, crm.hook
    operator = await mint_key(Role.OPERATOR)

    moved = await client.patch(hook, headers=bearer(operator), json={
        "url": f"https://{ATTACKER_NAME}:{attacker.port}/collect"})
    assert moved.status == 422, await moved.text()
    assert await error_code(moved) == "validation_failed"
    assert [d["field"] for d in (await moved.json())["error"]["details"]] == [
        "headers", "body_template"]

    await raise_reject(database_url)
    assert await wait_for(lambda: len(receiver.requests) + len(attacker.requests) == 1)
    assert attacker.requests == []
    assert receiver.requests[0].headers["Authorization"] == TOKEN


async def test_new_url_with_headers_given_again_or_cleared(
    crm: Crm, mint_key: MintKey, receiver: Receiver, attacker: Receiver, database_url: str,
) -> None:
    client, hook = crm.client, crm.hook
    operator = await mint_key(Role.OPERATOR)
    own = f"https://{ATTACKER_NAME}:{attacker.port}/collect"

    cleared = await client.patch(hook, headers=bearer(operator),
                                 json={"url": own, "headers": None, "body_template": TEMPLATE})
    assert cleared.status == 200, await cleared.text()
    assert (await cleared.json())["headers"] == {"is_set": False}
    await raise_reject(database_url)
    assert await wait_for(lambda: len(attacker.requests) == 1)
    assert "Authorization" not in attacker.requests[0].headers

    given = await client.patch(hook, headers=bearer(operator), json={
        "url": own + "2", "headers": {"Authorization": "Bearer theirs"},
        "body_template": TEMPLATE})
    assert given.status == 200, await given.text()
    await raise_reject(database_url)
    assert await wait_for(lambda: len(attacker.requests) == 2)
    assert attacker.requests[1].headers["Authorization"] == "Bearer theirs"
    assert TOKEN not in [r.headers.get("Authorization") for r in attacker.requests]
