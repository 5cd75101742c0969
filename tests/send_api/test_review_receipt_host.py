"""An interrupted attempt found queued in another host's log keeps that host.

Instances on several hosts share the outbox, each relaying to its own Postfix and
following its own log. A row cut off on one host may be claimed next on another,
which finds the first host's commit among the receipts: the message is that
host's Postfix's, under that Postfix's queue id. Stored as the claiming host's,
its delivery lines (in the first host's log) never apply, and the claiming
host's lines for another message under the same short queue id would.
"""

from __future__ import annotations

import uuid

import asyncpg

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.send.deliveryapply import Applied, apply_events
from postwarden_admin_api.send.deliverylines import DeliveryEvent
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from tests.fixtures.scripted_smtp import Scripted
from tests.fixtures.submissions import ROOMY, submission

from .test_receipts import HOST, add_receipt, maillog  # noqa: F401 - a fixture
from .test_relay import database_url, settled  # noqa: F401 - a fixture

OTHER_HOST = "mx-b.internal"


async def test_a_commit_in_another_host_s_log_is_stored_as_that_host_s(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int],
    maillog: MaillogFollower,  # noqa: F811 - the imported fixture
) -> None:
    server, port = smtp_server
    async with pool.acquire() as conn, conn.transaction():
        message = (await enqueue(conn, submission(uuid.uuid4().hex, "far@example.org"), ROOMY)).id
        # Cut off on the other host, whose follower read Postfix's commit there.
        await conn.execute("UPDATE outbox SET attempts = 1, unsettled = true "
                           "WHERE message_id = $1", message)
        await add_receipt(conn, message, "QFAR1", True, host=OTHER_HOST)
    assert maillog.host == HOST != OTHER_HOST
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1), maillog,
                         Metrics())
    worker.start()
    try:
        row = await settled(pool, message)
    finally:
        await worker.stop(grace=10)
    assert (row["status"], row["queue_id"], row["queue_host"]) == ("relayed", "QFAR1",
                                                                    OTHER_HOST)
    assert not server.received
    # This host's Postfix's own QFAR1 is another message: its bounce touches nothing.
    bounce = DeliveryEvent("QFAR1", "far@example.org", "bounced", "5.1.1", "550 5.1.1 no")
    async with pool.acquire() as conn:
        assert await apply_events(conn, HOST, [bounce]) == Applied(set(), set(), set())
        assert await apply_events(conn, OTHER_HOST, [bounce]) == Applied({0}, set(), set())
