"""An alias with the real Postfix: ``virtual_alias_maps`` expands one recipient to two
members, each delivered with its own line naming the alias (``orig_to=``). The
recipient turns ``delivered`` once, and raises one ``send.delivered``, as its
state changes once; the timeline shows both lines."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from postwarden_admin_api.send.maillog import MaillogFollower
from tests.fixtures.postfix import running_postfix
from tests.webhooks.support import add_endpoint, generate_secret

from .test_maillog import message_status, sent_through_postfix, timeline

pytestmark = pytest.mark.postfix

ALIAS = "team@example.org"
# An entry in braces: its value holds the comma that separates the members.
MEMBERS = {"virtual_alias_maps": f"inline:{{ {{ {ALIAS}=ann@example.net,bob@example.net }} }}"}


async def test_an_alias_delivered_to_two_members_raises_one_send_delivered(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await add_endpoint(conn, f"alias-{uuid.uuid4().hex[:6]}", "https://hooks.example/in",
                           ["send.delivered"], generate_secret())
    with running_postfix(main=MEMBERS) as (postfix, _capture):
        follower = MaillogFollower(pool, postfix.maillog, host=f"al-{uuid.uuid4().hex[:6]}")
        await follower.poll()
        message_id, result = await sent_through_postfix(pool, postfix.port, follower.host, ALIAS)
        await asyncio.to_thread(postfix.wait_for_log, rf"{result.queue_id}: removed", 30)
        deadline = time.monotonic() + 10
        while len(await timeline(pool, message_id)) < 2 and time.monotonic() < deadline:
            await follower.poll()  # lines may wait for the queue id a moment
            await asyncio.sleep(0.2)
        await follower.release()
    assert await timeline(pool, message_id) == ["delivered", "delivered"]
    assert await message_status(pool, message_id) == "delivered"
    raised = await pool.fetch("SELECT payload->>'recipient' AS recipient FROM webhook_events "
                              "WHERE type = 'send.delivered' AND payload->>'id' = $1",
                              str(message_id))
    assert [row["recipient"] for row in raised] == [ALIAS]
