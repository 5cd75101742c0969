"""An attempt interrupted on one host is not sent again from another before that host's
log is read.

Instances on several hosts share the outbox, each relaying through its own Postfix
and reading its own log. A row whose attempt was cut off on host A (the service
died after Postfix's 250) came back to host B's relay when its lease ended; B
waited for its own log only, found no receipt (A's reader had not read A's log
since), and sent the message a second time. B now also waits for every other
host's reader that read lately to read its log to the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send import interrupted
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from tests.fixtures.scripted_smtp import Scripted

from .test_maillog import append, new_queue_id
from .test_receipts import active, cleanup, sent_to, until
from .test_relay import database_url, settled  # noqa: F401 - a fixture
from .test_review_log_lag import cut_off, due, put_off


async def reader(pool: asyncpg.Pool, tmp_path: Path, host: str) -> tuple[Path, MaillogFollower]:
    """Host ``host``'s log, and its reader, which has read it to its end once."""
    path = tmp_path / host / "maillog"
    path.parent.mkdir()
    path.write_text("")
    follower = MaillogFollower(pool, path, host=host)
    await follower.poll()
    return path, follower


@pytest.fixture
async def here(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[MaillogFollower]:
    """Host B's reader, running as in the service."""
    _, follower = await reader(pool, tmp_path, "mx-b")
    task = asyncio.create_task(follower.run())
    yield follower
    await stop_task(task)


@pytest.fixture
async def worker(pool: asyncpg.Pool, smtp_server: tuple[Scripted, int],
                 here: MaillogFollower) -> AsyncIterator[RelayWorker]:
    """Host B's relay."""
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=1),
                         here, Metrics())
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=10)


async def test_a_row_cut_off_on_another_host_waits_for_that_host_s_log(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], tmp_path: Path,
    worker: RelayWorker, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(interrupted, "LOG_WAIT_SECONDS", 3.0)
    server = smtp_server[0]
    there, other = await reader(pool, tmp_path, "mx-a")  # stalled: it reads no further
    recipient = "cut-off-on-a@example.org"
    message = await cut_off(pool, recipient)
    queue_id = new_queue_id("ONA")
    # Host A's Postfix queued it; A's service died before it stored the 250.
    append(there, cleanup(queue_id, f"<{message.hex}@example.com>"), active(queue_id))
    await due(pool, worker, message)
    await put_off(pool, server, message, recipient)
    back = asyncio.create_task(other.run())  # host A's service is back and reads its log
    try:
        await until(pool, "SELECT EXISTS (SELECT FROM relay_receipts WHERE message_id = $1 "
                    "AND committed)", message)
        await due(pool, worker, message)
        row = await settled(pool, message)
    finally:
        await stop_task(back)
    assert (row["status"], row["queue_id"], row["queue_host"]) == ("relayed", queue_id, "mx-a")
    assert sent_to(server, recipient) == 0


async def test_a_host_whose_reader_stopped_long_ago_holds_nothing_back(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], tmp_path: Path,
    worker: RelayWorker,
) -> None:
    await reader(pool, tmp_path, "mx-gone")
    await pool.execute("UPDATE maillog_positions SET updated_at = now() - $1 * interval "
                       "'1 second' - interval '1 minute' WHERE path LIKE 'mx-gone:%'",
                       interrupted.LOG_LAG_LIMIT)
    recipient = "nowhere-else@example.org"
    message = await cut_off(pool, recipient)
    await due(pool, worker, message)
    row = await settled(pool, message)
    assert (row["status"], row["attempts"]) == ("relayed", 2)
    assert sent_to(smtp_server[0], recipient) == 1
