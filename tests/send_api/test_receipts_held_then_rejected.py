"""A hold by one milter, then a reject by a later one, both at the end of the message.

cleanup logs the first milter's hold before it asks the next milter, whose reject
then means the message was not queued. The hold line alone counted as the commit,
so the relay took the message of an interrupted attempt for queued and stored it
as relayed: it was never sent (lost). The log lines are written here as Postfix
writes them.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.receipts import Holds, ReceiptLine, committed
from postwarden_admin_api.send.relay import RelayWorker
from tests.fixtures.scripted_smtp import Scripted

from .test_maillog import append, follower_at_end, new_queue_id
from .test_receipts import cleanup, receipt, sent_to
from .test_relay import database_url, settled  # noqa: F401 - a fixture
from .test_review_log_lag import cut_off, due, log_file, worker  # noqa: F401 - fixtures

CLEANUP = "Dec  5 04:47:08 mx postfix/cleanup[77]: {queue_id}: "
ENVELOPE = "from=<app@example.com> to=<a@example.org> proto=ESMTP helo=<relay.test>"


def held(queue_id: str) -> str:
    return CLEANUP.format(queue_id=queue_id) + (
        "milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: milter triggers HOLD "
        f"action; {ENVELOPE}\n")


def rejected(queue_id: str) -> str:
    return CLEANUP.format(queue_id=queue_id) + (
        f"milter-reject: END-OF-MESSAGE from localhost[127.0.0.1]: 5.7.1 refused; {ENVELOPE}\n")


def read(*texts: str) -> list[ReceiptLine]:
    lines = [receipt(text) for text in texts]
    assert all(line is not None for line in lines)
    return [line for line in lines if line is not None]


def test_only_a_milter_s_reject_at_the_end_can_undo_a_hold() -> None:
    """A reject earlier in the message (header_checks, a milter at RCPT) comes before
    any hold at the end could, and any other line of the queue id ends the hold's turn."""
    undone, after = Holds().undone(read(
        held("Q1"), rejected("Q1"),
        held("Q2"), CLEANUP.format(queue_id="Q2") + "reject: header Subject: x from "
        f"localhost[127.0.0.1]; {ENVELOPE}",
        held("Q3"), CLEANUP.format(queue_id="Q3") + "message-id=<x@y>", rejected("Q3"),
        held("Q4")))
    assert undone == [1]
    # Remembered for the next poll's lines, and only the hold still in its turn.
    assert after.undone(read(*(rejected(q) for q in ("Q1", "Q2", "Q3", "Q4"))))[0] == [3]


@pytest.mark.parametrize("polls", [
    pytest.param(1, id="read-in-one-poll"),
    pytest.param(2, id="the-reject-read-in-the-next-poll"),
])
async def test_a_hold_a_later_milter_rejected_is_no_commit(
    pool: asyncpg.Pool, tmp_path: Path, polls: int,
) -> None:
    path, follower = await follower_at_end(pool, tmp_path)
    message = await cut_off(pool, "held-then-rejected@example.org")
    queue_id = new_queue_id("HR")
    append(path, cleanup(queue_id, f"<{message.hex}@example.com>"), held(queue_id))
    if polls == 2:
        await follower.poll()
        assert await pool.fetchval("SELECT committed FROM relay_receipts WHERE message_id = $1",
                                   message)
    append(path, rejected(queue_id))
    await follower.poll()
    async with pool.acquire() as conn:
        assert await committed(conn, message) is None
    # The same queue id, reused by a later message of ours held for good, commits as before.
    again = await cut_off(pool, "held-later@example.org")
    append(path, cleanup(queue_id, f"<{again.hex}@example.com>"), held(queue_id))
    await follower.poll()
    async with pool.acquire() as conn:
        commit = await committed(conn, again)
    assert commit is not None and commit.queue_id == queue_id


async def test_another_message_s_reject_leaves_a_hold_committed(
    pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    path, follower = await follower_at_end(pool, tmp_path)
    message = await cut_off(pool, "held@example.org")
    queue_id = new_queue_id("HK")
    append(path, cleanup(queue_id, f"<{message.hex}@example.com>"), held(queue_id),
           rejected(new_queue_id("OTHER")))
    await follower.poll()
    async with pool.acquire() as conn:
        commit = await committed(conn, message)
    assert commit is not None and commit.queue_id == queue_id


async def test_the_relay_sends_a_message_held_then_rejected_again(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int],
    log_file: tuple[Path, MaillogFollower],  # noqa: F811 - the imported fixture
    worker: RelayWorker,  # noqa: F811 - the imported fixture
) -> None:
    server, (path, _) = smtp_server[0], log_file
    recipient = f"{uuid.uuid4().hex[:8]}@example.org"
    message = await cut_off(pool, recipient)
    queue_id = new_queue_id("HR")
    append(path, cleanup(queue_id, f"<{message.hex}@example.com>"), held(queue_id),
           rejected(queue_id))
    await due(pool, worker, message)
    row = await settled(pool, message)
    assert (row["status"], row["attempts"]) == ("relayed", 2)
    assert row["queue_id"] != queue_id
    assert sent_to(server, recipient) == 1
