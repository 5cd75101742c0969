"""A replay goes only to the URL the delivery was made for, also when the URL change
had to wait for the endpoint's row: a delivery made and sent to the old URL while
it waited must not count as made for the new one (``url_set_at`` was the change's
transaction start, taken before the wait)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from tests.admin_api.test_conflict_codes import error_code
from tests.fixtures.adminapp import MintKey, bearer
from tests.webhooks.support import generate_secret

from .conftest import RECEIVER_NAME, Start
from .receiver import Receiver, wait_for, wait_for_async
from .support import audit_event
from .test_review_header_exfiltration import ATTACKER_NAME, attacker  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Siem:
    client: TestClient[Any, Any]
    hook: str  # the endpoint's path: a webhook at the receiver, set up by the admin
    operator: str  # an operator's key: the attacker


@pytest.fixture
async def siem(start: Start, admin_key: str, mint_key: MintKey, receiver: Receiver) -> Siem:
    client = await start()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "siem", "url": f"https://{RECEIVER_NAME}:{receiver.port}/siem",
        "events": ["message.rejected"], "secret": generate_secret()})
    assert created.status == 201, await created.text()
    hook = f"/api/v1/webhooks/{(await created.json())['id']}"
    return Siem(client, hook, await mint_key(Role.OPERATOR))


async def _url_change_waits(watch: asyncpg.Connection) -> bool:
    waiting: int = await watch.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND query LIKE '%FROM webhook_endpoints WHERE id = $1 FOR UPDATE%'")
    return waiting == 1


async def test_delivery_sent_while_the_url_change_waited_is_not_replayed_to_the_new_url(
    siem: Siem, receiver: Receiver, attacker: Receiver,  # noqa: F811 - the fixture
    database_url: str,
) -> None:
    batch, watch, other = [await connect(database_url) for _ in range(3)]
    try:
        # A milter audit batch in flight holds the endpoint's row (FOR KEY SHARE).
        in_flight = batch.transaction()
        await in_flight.start()
        await write_audit_batch(batch, [audit_event("reject")])
        moving = asyncio.create_task(siem.client.patch(
            siem.hook, headers=bearer(siem.operator),
            json={"url": f"https://{ATTACKER_NAME}:{attacker.port}/collect"}))
        assert await wait_for_async(lambda: _url_change_waits(watch))
        # Meanwhile the next batch commits and is delivered to the URL still set.
        await write_audit_batch(other, [audit_event("reject")])
        assert await wait_for(lambda: len(receiver.delivered()) == 1)
        await in_flight.commit()
        moved = await asyncio.wait_for(moving, timeout=30)
        assert moved.status == 200, await moved.text()
    finally:
        for conn in (batch, watch, other):
            await conn.close()

    sent_home = receiver.delivered()[0].headers["webhook-id"]
    listed = await siem.client.get(f"{siem.hook}/deliveries", headers=bearer(siem.operator))
    [delivery] = [d for d in (await listed.json())["deliveries"] if d["event_id"] == sent_home]
    replay = await siem.client.post(f"{siem.hook}/deliveries/{delivery['id']}/replay",
                                    headers=bearer(siem.operator))
    assert replay.status == 409, await replay.text()
    assert await error_code(replay) == "webhook_url_changed"
    # The batch that was in flight goes to whichever URL is set when the worker takes it
    # (the old one, if it does so between that batch's commit and the URL's): either
    # way the delivery made before the change never reaches the new URL.
    assert await wait_for(lambda: len(receiver.delivered()) + len(attacker.requests) == 2)
    assert sent_home not in [r.headers["webhook-id"] for r in attacker.requests]
