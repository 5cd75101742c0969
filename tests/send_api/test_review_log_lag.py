"""An interrupted attempt is not sent again while Postfix's log cannot tell yet.

After an attempt whose answer was lost, only qmgr's ``queue active`` line (or a
milter's hold) says Postfix committed the message. A backlogged qmgr logs it
late: cleanup's line with our Message-ID is in the log, the commit is not yet,
and the row was sent a second time. A follower that had not read the log to its
end within the wait likewise let the row be sent again, the outcome unknown.
Both now put the row off (no send, no attempt spent) until the log tells, up to
a bound each. The log lines are written here, as Postfix would write them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send import interrupted
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.receipts import OPEN_RECEIPT_LIMIT
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from tests.fixtures.scripted_smtp import Scripted
from tests.fixtures.submissions import ROOMY, submission

from .test_maillog import append, follower_at_end, new_queue_id
from .test_receipts import active, add_receipt, cleanup, sent_to, until
from .test_relay import database_url, settled  # noqa: F401 - a fixture

# Put off: due again later, the claim's attempt given back, still unsettled (or the
# row is gone: sent and settled, which the test then reports).
PUT_OFF_OR_GONE = """
SELECT NOT EXISTS (SELECT FROM outbox WHERE message_id = $1)
    OR EXISTS (SELECT FROM outbox WHERE message_id = $1 AND attempts = 1 AND unsettled
               AND next_attempt_at > now() + interval '5 seconds')
"""


@pytest.fixture
async def log_file(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[tuple[Path,
                                                                            MaillogFollower]]:
    """An (empty) log and its follower, running as in the service."""
    path, follower = await follower_at_end(pool, tmp_path)
    task = asyncio.create_task(follower.run())
    yield path, follower
    await stop_task(task)


async def cut_off(pool: asyncpg.Pool, recipient: str) -> uuid.UUID:
    """A row as an attempt whose answer was lost leaves it, its lease still far off."""
    async with pool.acquire() as conn, conn.transaction():
        message = (await enqueue(conn, submission(uuid.uuid4().hex, recipient), ROOMY)).id
        await conn.execute("UPDATE outbox SET attempts = 1, unsettled = true, next_attempt_at "
                           "= now() + interval '1 hour' WHERE message_id = $1", message)
    return message


async def due(pool: asyncpg.Pool, worker: RelayWorker, message: uuid.UUID) -> None:
    await pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE message_id = $1",
                       message)
    worker.wake()


async def relayed(pool: asyncpg.Pool, port: int, follower: MaillogFollower,
                  message: uuid.UUID, *, attempts: int = 3,
                  queue: interrupted.PostfixQueue | None = None) -> asyncpg.Record:
    """The message's row once a relay worker of one task (Postfix at ``port``, its log
    read by ``follower``, its queue listed by ``queue``) took it up, made due now."""
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, attempts, 0.05, workers=1),
                         follower, Metrics(), queue)
    worker.start()
    try:
        await due(pool, worker, message)
        return await settled(pool, message)
    finally:
        await worker.stop(grace=10)


@pytest.fixture
async def worker(pool: asyncpg.Pool, smtp_server: tuple[Scripted, int],
                 log_file: tuple[Path, MaillogFollower]) -> AsyncIterator[RelayWorker]:
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=1),
                         log_file[1], Metrics())
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=10)


async def put_off(pool: asyncpg.Pool, server: Scripted, message: uuid.UUID,
                  recipient: str) -> None:
    await until(pool, PUT_OFF_OR_GONE, message)
    assert sent_to(server, recipient) == 0
    assert await pool.fetchval("SELECT attempts FROM outbox WHERE message_id = $1",
                               message) == 1


async def test_a_message_cleanup_took_in_waits_for_qmgr_instead_of_going_twice(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int],
    log_file: tuple[Path, MaillogFollower], worker: RelayWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, (path, _) = smtp_server[0], log_file
    recipient = "backlog@example.org"
    message = await cut_off(pool, recipient)
    queue_id = new_queue_id("LAG")
    append(path, cleanup(queue_id, f"<{message.hex}@example.com>"))  # qmgr is behind
    await until(pool, "SELECT EXISTS (SELECT FROM relay_receipts WHERE message_id = $1 "
                "AND NOT committed)", message)
    await due(pool, worker, message)
    await put_off(pool, server, message, recipient)
    assert f"reached Postfix's cleanup as {queue_id}" in caplog.text
    append(path, active(queue_id))  # qmgr catches up
    await until(pool, "SELECT EXISTS (SELECT FROM relay_receipts WHERE message_id = $1 "
                "AND committed)", message)
    await due(pool, worker, message)
    row = await settled(pool, message)
    # Only the claim that settled it counts: the one put off gave its attempt back.
    assert (row["status"], row["queue_id"], row["attempts"]) == ("relayed", queue_id, 2)
    assert sent_to(server, recipient) == 0


async def test_an_open_receipt_past_the_limit_no_longer_holds_the_message_back(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker,
) -> None:
    """A transfer cut off mid-DATA leaves the same lines, and its file is gone: once the
    receipt is older than qmgr could be behind, the message is sent again."""
    server = smtp_server[0]
    recipient = "cut-mid-data@example.org"
    message = await cut_off(pool, recipient)
    await add_receipt(pool, message, new_queue_id("OLD"), False)
    await pool.execute("UPDATE relay_receipts SET seen_at = now() - $2::interval "
                       "- interval '1 minute' WHERE message_id = $1", message,
                       OPEN_RECEIPT_LIMIT)
    await due(pool, worker, message)
    row = await settled(pool, message)
    assert (row["status"], row["attempts"]) == ("relayed", 2)
    assert sent_to(server, recipient) == 1


async def test_a_follower_behind_puts_the_message_off_then_is_not_waited_for_forever(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The follower never reads to the end (it is not running): the outcome is unknown,
    so the row is put off; past LOG_LAG_LIMIT it is decided as without a log."""
    monkeypatch.setattr(interrupted, "LOG_WAIT_SECONDS", 0.2)
    server, port = smtp_server
    _, stalled = await follower_at_end(pool, tmp_path)
    recipient = "unknown@example.org"
    message = await cut_off(pool, recipient)
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1), stalled,
                         Metrics())
    worker.start()
    try:
        await due(pool, worker, message)
        await put_off(pool, server, message, recipient)
        assert "has not read to the end of the log (for 0 s)" in caplog.text
        monkeypatch.setattr(interrupted, "LOG_LAG_LIMIT", 0.0)
        await due(pool, worker, message)
        row = await settled(pool, message)
    finally:
        await worker.stop(grace=10)
    assert (row["status"], row["attempts"]) == ("relayed", 2)
    assert sent_to(server, recipient) == 1
    assert f"deciding message {message} of an interrupted attempt without it" in caplog.text
