"""An answer stored after its row's lease ran out does not undo another worker's claim.

Postgres out of reach longer than the lease while a worker held Postfix's 4xx or
5xx: another worker claimed the row meanwhile and was sending it. Storing the first
answer then put the row due again (a 4xx: a third claim sent it a second time while
the second was in flight) or failed the message and dropped its row (a 5xx) under the
claim at work. Such an answer is now left to the claim that holds the row.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from postwarden_admin_api.send.submit import SmtpSession
from tests.fixtures.scripted_smtp import Scripted

from .test_relay import accepted, database_url  # noqa: F401 - a fixture


@pytest.mark.parametrize("reply", ["451 4.3.0 try again later", "554 5.7.1 not today"])
async def test_an_answer_to_a_claim_that_lost_its_row_leaves_the_row_to_the_new_claim(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], reply: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, port = smtp_server
    handler.data_replies.append(reply)
    config = RelayConfig("127.0.0.1", port, 3, 0.05, workers=1)
    first, second = RelayWorker(pool, config), RelayWorker(pool, config)
    message_id = await accepted(pool, "once@example.org")
    [row] = await first._claim()
    session = SmtpSession("127.0.0.1", port, 5.0, "relay.test")
    try:
        result = await session.submit(row.envelope_from, row.recipients, row.content)
    finally:
        await session.close()
    assert result.reply == reply
    # The first claim's lease ran out (its answer not stored: Postgres away), and
    # another worker claimed the row; it is sending it now.
    await pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE message_id = $1",
                       message_id)
    assert [r.id for r in await second._claim()] == [message_id]
    before = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message_id)

    await first._record(row, result, found_in_log=False, queue_host=None)

    assert await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1",
                               message_id) == before
    assert before["next_attempt_at"] - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=10)
    third = RelayWorker(pool, config)
    assert await third._claim() == []  # no third claim sends it
    for worker in (first, second, third):
        await worker.stop()
    message = await pool.fetchrow("SELECT status, attempts, last_error FROM "
                                  "outbound_messages WHERE id = $1", message_id)
    assert dict(message) == {"status": "queued", "attempts": 0, "last_error": None}
    events = await pool.fetchval("SELECT count(*) FROM outbound_events WHERE message_id = $1 "
                                 "AND event IN ('relay_deferred', 'failed')", message_id)
    assert events == 0
    assert f"message {message_id} was claimed again while this worker was held up" \
        in caplog.text


async def test_an_answer_to_a_message_no_longer_stored_says_so(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], caplog: pytest.LogCaptureFixture,
) -> None:
    """Its rows gone (a commit PostgreSQL lost): not taken for a claim made meanwhile."""
    handler, port = smtp_server
    handler.data_replies.append("451 4.3.0 try again later")
    metrics = Metrics()
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1),
                         metrics=metrics)
    message_id = await accepted(pool, "lost@example.org")
    [row] = await worker._claim()
    session = SmtpSession("127.0.0.1", port, 5.0, "relay.test")
    try:
        result = await session.submit(row.envelope_from, row.recipients, row.content)
    finally:
        await session.close()
    await pool.execute("DELETE FROM outbound_messages WHERE id = $1", message_id)
    assert await worker._record(row, result, found_in_log=False, queue_host=None) is None
    assert f"message {message_id} is no longer stored" in caplog.text
    assert "claimed again" not in caplog.text
    assert metrics.registry.get_sample_value(
        "postwarden_relay_outcomes_total", {"outcome": "lost"}) == 1
    await worker.stop()
