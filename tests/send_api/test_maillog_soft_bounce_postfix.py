"""``soft_bounce = yes`` with the real Postfix: a refusal is logged ``status=SOFTBOUNCE``
and retried; once the message expires, its recipient bounces (not suppressed) and the
message fails, instead of staying ``relayed`` for good."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from postwarden_admin_api.send.deliverylines import EXPIRED_DETAIL
from postwarden_admin_api.send.maillog import MaillogFollower
from tests.fixtures.postfix import running_postfix

from .test_maillog import message_status, recipients, sent_through_postfix

pytestmark = pytest.mark.postfix

EXPIRING = {"soft_bounce": "yes", "maximal_queue_lifetime": "0", "bounce_queue_lifetime": "0"}
REFUSAL = "550 5.1.1 no such user"


async def test_a_soft_bounced_recipient_bounces_when_its_message_expires(
    pool: asyncpg.Pool,
) -> None:
    gone = f"sbx-{uuid.uuid4().hex[:8]}@example.org"
    with running_postfix(main=EXPIRING) as (postfix, capture):
        follower = MaillogFollower(pool, postfix.maillog, host=f"sb-{uuid.uuid4().hex[:6]}")
        await follower.poll()
        capture.reply_for(gone, REFUSAL)
        message_id, result = await sent_through_postfix(pool, postfix.port, follower.host, gone)
        await asyncio.to_thread(postfix.wait_for_log, rf"{result.queue_id}: removed", 30)
        assert "status=SOFTBOUNCE" in postfix.log()
        deadline = time.monotonic() + 10
        while await message_status(pool, message_id) == "relayed" and (
                time.monotonic() < deadline):
            await follower.poll()  # lines may wait for the queue id a moment
            await asyncio.sleep(0.2)
        await follower.release()
    assert await recipients(pool, message_id) == {gone: (
        "bounced", f"{EXPIRED_DETAIL} (last: host 127.0.0.1[127.0.0.1] said: {REFUSAL} "
        "(in reply to RCPT TO command))")}
    assert await message_status(pool, message_id) == "failed"
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               gone) == 0
