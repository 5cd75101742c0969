"""The last attempt's message went out without an answer: Postfix's log decides.

A connection lost after the final dot leaves it unknown whether Postfix queued the
message. Before the last attempt that is settled from the log at the next claim;
the last attempt must not be marked ``failed`` on the spot either: a message
Postfix queued (and delivers) would be reported failed, and a client that sends
it again on that word sends it twice.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from tests.fixtures.scripted_smtp import hang_up_after_data

from .test_receipts import add_receipt, maillog, until  # noqa: F401 - a fixture
from .test_relay import accepted, database_url, settled  # noqa: F401 - a fixture


@pytest.fixture
async def silent_postfix() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server that takes each message whole and hangs up before answering it."""
    sent: list[bytes] = []
    server = await asyncio.start_server(functools.partial(hang_up_after_data, received=sent),
                                        "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], sent
    finally:
        server.close()


async def last_attempt_unanswered(pool: asyncpg.Pool, follower: MaillogFollower, port: int,
                                  recipient: str, receipt: str | None) -> asyncpg.Record:
    """Relay one message with a single attempt allowed; once that attempt's answer was
    lost, let Postfix's log show ``receipt`` committed (None: nothing) and let it run."""
    message = await accepted(pool, recipient)
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 1, 60.0, workers=1), follower,
                         Metrics())
    worker.start()
    try:
        # Either the attempt's deferral is stored (the row waits, unsettled, for the log),
        # or the message was settled at once. Not merely "unsettled": a claim marks the
        # row so before its attempt, whose deferral would then undo the update below.
        await until(pool, "SELECT EXISTS (SELECT FROM outbound_events WHERE message_id = $1 "
                    "AND event = 'relay_deferred') OR (SELECT status <> 'queued' FROM "
                    "outbound_messages WHERE id = $1)", message)
        if receipt is not None:
            await add_receipt(pool, message, receipt, True)
        await pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE message_id = $1",
                           message)
        worker.wake()
        return await settled(pool, message)
    finally:
        await worker.stop(grace=10)


async def test_a_last_attempt_postfix_queued_unanswered_is_relayed_not_failed(
    pool: asyncpg.Pool,
    maillog: MaillogFollower,  # noqa: F811 - the imported fixture
    silent_postfix: tuple[int, list[bytes]],
) -> None:
    port, sent = silent_postfix
    row = await last_attempt_unanswered(pool, maillog, port, "last@example.org", "QLAST1")
    # The claim that read the log counts, as for any interrupted attempt found queued.
    assert (row["status"], row["queue_id"], row["attempts"]) == ("relayed", "QLAST1", 2)
    assert len(sent) == 1


async def test_a_last_attempt_postfix_did_not_queue_fails_unsent_again(
    pool: asyncpg.Pool,
    maillog: MaillogFollower,  # noqa: F811 - the imported fixture
    silent_postfix: tuple[int, list[bytes]],
) -> None:
    port, sent = silent_postfix
    row = await last_attempt_unanswered(pool, maillog, port, "gone@example.org", None)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"].startswith("no answer to the message sent")
    assert len(sent) == 1
    events = await pool.fetch("SELECT event FROM outbound_events WHERE message_id = $1 "
                              "ORDER BY id", uuid.UUID(str(row["id"])))
    assert [e["event"] for e in events][-1] == "failed"
