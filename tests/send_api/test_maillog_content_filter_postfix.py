"""An after-queue content filter with the real Postfix (amavis's shape): the message
goes through ``content_filter`` to a listener that queues it again under a new queue
id, and is delivered from there. The first queue id's ``status=sent`` is the hand-over
to the filter, not a delivery: the recipient's result is the new queue id's line."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

from postwarden_admin_api.send.deliverylines import DeliveryEvent
from postwarden_admin_api.send.handovers import Arrivals
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.receipts import ReceiptLine
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import (
    CaptureServer,
    PostfixInstance,
    running_postfix,
)

from .test_maillog import message_status, recipients, sent_through_postfix, timeline

pytestmark = pytest.mark.postfix

REFUSAL = "550 5.1.1 no such user"


@contextmanager
def filtered_postfix() -> Iterator[tuple[PostfixInstance, CaptureServer]]:
    """Postfix whose content filter is itself: a listener that queues the message again
    without filtering it (the filter's way back in)."""
    port = free_port()

    def reinjection(instance: PostfixInstance) -> None:
        instance.add_smtpd_listener({"content_filter": ""}, port=port)

    with running_postfix(main={"content_filter": f"smtp:[127.0.0.1]:{port}"},
                         configure=reinjection) as running:
        yield running


async def test_a_recipient_bounced_after_the_content_filter_bounces(
    pool: asyncpg.Pool,
) -> None:
    """The hand-over to the filter made the recipient delivered (its detail the filter's
    250), and the bounce that came under the new queue id was never read: no failure,
    no suppression."""
    gone = f"cf-{uuid.uuid4().hex[:8]}@example.org"
    with filtered_postfix() as (postfix, capture):
        follower = MaillogFollower(pool, postfix.maillog, host=f"cf-{uuid.uuid4().hex[:6]}")
        await follower.poll()
        capture.reply_for(gone, REFUSAL)
        message_id, result = await sent_through_postfix(pool, postfix.port, follower.host, gone)
        await asyncio.to_thread(postfix.wait_for_log, r"status=bounced", 30)
        deadline = time.monotonic() + 10
        while await message_status(pool, message_id) == "relayed" and (
                time.monotonic() < deadline):
            await follower.poll()  # the new queue id's lines are applied a poll later
            await asyncio.sleep(0.2)
        await follower.release()
        handed_to = re.search(rf"{result.queue_id}: to=<{re.escape(gone)}>, .* "
                              r"status=sent \(250 .* queued as (\w+)\)", postfix.log())
    assert handed_to is not None
    assert await recipients(pool, message_id) == {gone: (
        "bounced", f"host 127.0.0.1[127.0.0.1] said: {REFUSAL} (in reply to RCPT TO command)")}
    assert await message_status(pool, message_id) == "failed"
    assert await timeline(pool, message_id) == ["bounced"]
    assert await pool.fetchval("SELECT queue_id FROM outbound_messages WHERE id = $1",
                               message_id) == handed_to[1]
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               gone) == 1


def test_a_remote_servers_queue_id_is_a_delivery() -> None:
    """Only a queue id that came into this log with a Message-ID of ours is a hand-over:
    a remote Postfix's ``queued as`` is where the message was delivered."""
    arrivals = Arrivals()
    arrivals.note(ReceiptLine("4jj9Z0ours0zKYAa", uuid.uuid4(), committed=False))
    sent = DeliveryEvent("4jj9Z0first0zKYA", "a@example.org", "delivered", "2.0.0",
                         "250 2.0.0 Ok: queued as 4jj9Z0remote0zKY")
    assert arrivals.handed_over(sent) == sent
    back = dataclasses.replace(sent, reply="250 2.0.0 Ok: queued as 4jj9Z0ours0zKYAa")
    assert arrivals.handed_over(back) == dataclasses.replace(
        back, handed_to="4jj9Z0ours0zKYAa")
    # The id taken by other mail since (Postfix reuses short ids): a delivery again.
    arrivals.note(ReceiptLine("4jj9Z0ours0zKYAa", None, committed=False, foreign=True))
    assert arrivals.handed_over(back) == back
