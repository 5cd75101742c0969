"""A host that stopped cleanly holds back no interrupted row its log cannot be about.

Hosts share the outbox; a row whose attempt was interrupted waits, unsent, until
Postfix's log can tell whether that attempt was queued. Every other host's log
reader that had read lately was waited for, each until it read its log to the
end *after* the row was looked at: a host that had stopped cleanly never would
again, so each interrupted row cost a 60 s wait, inline (the relay's other rows
waited too), then a put-off that went on for up to 30 minutes. Now only the log of
the host whose Postfix the attempt went to is waited for, and not when its reader
read that log to the end once its relay had stopped; a host truly behind is still
waited for, without holding up other rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send import interrupted
from postwarden_admin_api.send.maillog import MAX_READ, MaillogFollower
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from tests.fixtures.scripted_smtp import Scripted, hang_up_after_data

from .test_maillog import OTHERS, append, new_queue_id
from .test_receipts import active, cleanup, sent_to, until
from .test_relay import accepted, database_url, settled  # noqa: F401 - a fixture
from .test_relay_other_host_log import reader
from .test_review_log_lag import due, put_off

# Well under interrupted.LOG_WAIT_SECONDS, the wait each row cost.
PROMPTLY = 10.0


@pytest.fixture
async def silent_postfix() -> AsyncIterator[int]:
    """A server that takes each message whole and hangs up before answering it."""
    server = await asyncio.start_server(hang_up_after_data, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def interrupted_on(pool: asyncpg.Pool, follower: MaillogFollower, port: int,
                         recipient: str) -> uuid.UUID:
    """A message whose attempt, by a relay of ``follower``'s host, went out unanswered:
    its row stays unsettled, due again in an hour."""
    message = await accepted(pool, recipient)
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 3600.0, workers=1),
                         follower, Metrics())
    worker.start()
    try:
        await until(pool, "SELECT EXISTS (SELECT FROM outbound_events WHERE message_id = $1 "
                    "AND event = 'relay_deferred')", message)
    finally:
        await worker.stop(grace=10)
    assert await pool.fetchval("SELECT unsettled FROM outbox WHERE message_id = $1", message)
    return message


async def stopped_cleanly(follower: MaillogFollower) -> None:
    """As the service stops (its relay first): the reader reads once more, hands over."""
    task = asyncio.create_task(follower.run())
    await asyncio.sleep(0.2)
    follower.stop()
    await task


@dataclass(frozen=True)
class HostA:
    """Host A, this one: its log's reader and its relay, running as in the service."""

    follower: MaillogFollower
    worker: RelayWorker
    metrics: Metrics
    postfix: Scripted  # the Postfix its relay submits to


@pytest.fixture
async def here(pool: asyncpg.Pool, tmp_path: Path,
               smtp_server: tuple[Scripted, int]) -> AsyncIterator[HostA]:
    _, follower = await reader(pool, tmp_path, "mx-a")
    task = asyncio.create_task(follower.run())
    metrics = Metrics()
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=1),
                         follower, metrics)
    worker.start()
    try:
        # Its first claim, once it holds its claim token, finds nothing: the test's
        # messages are for another relay's claim.
        await until(pool, "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_database d ON "
                    "d.oid = l.database WHERE locktype = 'advisory' AND objsubid = 2 AND "
                    "datname = current_database())")
        yield HostA(follower, worker, metrics, smtp_server[0])
    finally:
        await worker.stop(grace=10)
        await stop_task(task)


@pytest.fixture
async def there(pool: asyncpg.Pool, tmp_path: Path) -> tuple[Path, MaillogFollower]:
    """Host B's log, and its reader, which has read it to its end once."""
    return await reader(pool, tmp_path, "mx-b")


async def found_queued_on_b_once_back(  # noqa: PLR0917 - the host, B's reader, the row
    pool: asyncpg.Pool, here: HostA, follower: MaillogFollower, message: uuid.UUID,
    queue_id: str, recipient: str,
) -> None:
    """Host B's service back, ``follower`` reading on: once its log's receipt for
    ``message`` is in, the row is found relayed there as ``queue_id``, not sent here."""
    back = asyncio.create_task(follower.run())
    try:
        await until(pool, "SELECT EXISTS (SELECT FROM relay_receipts WHERE message_id = $1 "
                    "AND committed)", message)
        await due(pool, here.worker, message)
        row = await settled(pool, message)
    finally:
        await stop_task(back)
    assert (row["status"], row["queue_id"], row["queue_host"]) == ("relayed", queue_id, "mx-b")
    assert sent_to(here.postfix, recipient) == 0


def put_offs(metrics: Metrics) -> float:
    return sum(metrics.registry.get_sample_value("postwarden_relay_put_off_total",
                                                 {"reason": reason}) or 0.0
               for reason in ("open_receipt", "log_behind"))


async def test_a_row_interrupted_here_is_not_held_back_by_a_host_that_stopped(
    pool: asyncpg.Pool, silent_postfix: int, here: HostA, there: tuple[Path, MaillogFollower],
) -> None:
    await stopped_cleanly(there[1])
    recipient = "interrupted-here@example.org"
    message = await interrupted_on(pool, here.follower, silent_postfix, recipient)
    await due(pool, here.worker, message)
    row = await settled(pool, message, within=PROMPTLY)
    # This host's log shows no queue file for it: sent again, once.
    assert (row["status"], row["attempts"]) == ("relayed", 2)
    assert sent_to(here.postfix, recipient) == 1
    assert put_offs(here.metrics) == 0


async def test_a_row_interrupted_on_a_host_that_then_stopped_is_decided_from_its_log(
    pool: asyncpg.Pool, silent_postfix: int, here: HostA, there: tuple[Path, MaillogFollower],
) -> None:
    log_file, other = there
    queued_there = "queued-on-b@example.org"
    lost_there = "lost-on-b@example.org"
    queued = await interrupted_on(pool, other, silent_postfix, queued_there)
    lost = await interrupted_on(pool, other, silent_postfix, lost_there)
    queue_id = new_queue_id("ONB")
    # B's Postfix queued the first; B's service then stopped, its reader reading last.
    append(log_file, cleanup(queue_id, f"<{queued.hex}@example.com>"), active(queue_id))
    await stopped_cleanly(other)
    await due(pool, here.worker, queued)
    await due(pool, here.worker, lost)
    found = await settled(pool, queued, within=PROMPTLY)
    resent = await settled(pool, lost, within=PROMPTLY)
    assert (found["status"], found["queue_id"], found["queue_host"]) == (
        "relayed", queue_id, "mx-b")
    assert sent_to(here.postfix, queued_there) == 0
    assert (resent["status"], sent_to(here.postfix, lost_there)) == ("relayed", 1)
    assert put_offs(here.metrics) == 0


async def test_a_host_truly_behind_is_waited_for_without_holding_up_other_rows(
    pool: asyncpg.Pool, silent_postfix: int, here: HostA, there: tuple[Path, MaillogFollower],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log_file, other = there  # then B dies: its reader reads no further
    recipient = "behind-on-b@example.org"
    message = await interrupted_on(pool, other, silent_postfix, recipient)
    queue_id = new_queue_id("BHB")
    append(log_file, cleanup(queue_id, f"<{message.hex}@example.com>"), active(queue_id))
    await due(pool, here.worker, message)
    # Meanwhile another message goes at once.
    ordinary = await accepted(pool, "ordinary@example.org")
    here.worker.wake()
    assert (await settled(pool, ordinary, within=PROMPTLY))["status"] == "relayed"
    monkeypatch.setattr(interrupted, "LOG_WAIT_SECONDS", 0.0)  # B counts as behind now
    await put_off(pool, here.postfix, message, recipient)
    await found_queued_on_b_once_back(pool, here, other, message, queue_id, recipient)


async def test_a_host_that_stopped_before_reading_its_log_to_the_end_is_waited_for(
    pool: asyncpg.Pool, silent_postfix: int, here: HostA, there: tuple[Path, MaillogFollower],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clean stop whose last read did not reach the end of a busy log (over twice
    MAX_READ behind) proves nothing about what is beyond it."""
    monkeypatch.setattr(interrupted, "LOG_WAIT_SECONDS", 0.0)
    log_file, other = there
    recipient = "far-in-the-log-of-b@example.org"
    message = await interrupted_on(pool, other, silent_postfix, recipient)
    queue_id = new_queue_id("FAR")
    append(log_file, OTHERS * (3 * MAX_READ // len(OTHERS)),
           cleanup(queue_id, f"<{message.hex}@example.com>"), active(queue_id))
    await stopped_cleanly(other)
    await due(pool, here.worker, message)
    await put_off(pool, here.postfix, message, recipient)
    await found_queued_on_b_once_back(pool, here, MaillogFollower(pool, log_file, host="mx-b"),
                                      message, queue_id, recipient)


async def test_a_relay_stop_that_cuts_an_attempt_off_says_so(pool: asyncpg.Pool) -> None:
    """A server that never answers holds the attempt past the stop's grace: the task is
    cancelled, its outcome unknown to this instance, and the service then lets Postfix
    log it before the follower's last read (LOG_SETTLE_SECONDS)."""
    done = asyncio.Event()

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    await accepted(pool, "cut-off@example.org")
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", server.sockets[0].getsockname()[1],
                                           3, 3600.0, workers=1), None, Metrics())
    try:
        assert not worker.cut_off
        worker.start()
        await until(pool, "SELECT EXISTS (SELECT FROM outbox WHERE unsettled)")
        await worker.stop(grace=0.2)
        assert worker.cut_off
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_the_last_read_after_a_settle_takes_in_what_postfix_logged_meanwhile(
    pool: asyncpg.Pool, there: tuple[Path, MaillogFollower],
) -> None:
    log_file, other = there
    message = await accepted(pool, "logged-late@example.org")
    task = asyncio.create_task(other.run())
    await asyncio.sleep(0.2)
    other.stop(settle=1.0)
    await asyncio.sleep(0.3)  # Postfix writes its lines after the relay stopped
    queue_id = new_queue_id("LATE")
    append(log_file, cleanup(queue_id, f"<{message.hex}@example.com>"), active(queue_id))
    await task
    assert await pool.fetchval("SELECT committed FROM relay_receipts WHERE message_id = $1",
                               message)
    assert await pool.fetchval("SELECT read_to_stop FROM maillog_positions WHERE path = $1",
                               other.key)
