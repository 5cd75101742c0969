"""Interrupted relay attempts: Postfix's log says whether the message was queued.

Parsing the receipt lines, the follower keeping them for outbox rows, and the
relay worker settling an interrupted row from them instead of sending it
again (a scripted SMTP server stands in for Postfix; tests/send_api/test_e2e.py
runs the same through the real one).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.receipts import ReceiptLine, committed_queue_id, parse_receipt
from postwarden_admin_api.send.relay import RelayConfig, RelayWorker
from tests.fixtures.scripted_smtp import Scripted

from .test_maillog import follower_at_end, new_queue_id
from .test_outbox_limits import ROOMY, submission
from .test_relay import accepted, settled

OURS = uuid.UUID("0f8e3a52c1d44b7e9a6b2c3d4e5f6a7b")


def cleanup(queue_id: str, message_id: str) -> str:
    return f"Nov 23 15:12:49 mx postfix/cleanup[77]: {queue_id}: message-id={message_id}\n"


def active(queue_id: str) -> str:
    return (f"Nov 23 15:12:49 mx postfix/qmgr[78]: {queue_id}: from=<app@example.com>, "
            "size=812, nrcpt=1 (queue active)\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(cleanup("4AB", f"<{OURS.hex}@example.com>"),
                     ReceiptLine("4AB", OURS, committed=False), id="our-message-id"),
        pytest.param(cleanup("4AB", "<20261123.x@mua.example>"),
                     ReceiptLine("4AB", None, committed=False), id="other-message-id"),
        pytest.param(active("4AB"), ReceiptLine("4AB", None, committed=True), id="queue-active"),
        pytest.param(
            "Nov 23 15:12:49 mx postfix/cleanup[77]: 4AB: milter-hold: END-OF-MESSAGE from "
            "localhost[127.0.0.1]: quarantined; from=<a@example.com> to=<b@example.org>",
            ReceiptLine("4AB", None, committed=True), id="milter-hold"),
        pytest.param(
            "Nov 23 15:12:49 mx postfix-2/cleanup[77]: 4AB: discard: header X-Spam: yes from "
            "localhost[127.0.0.1]; from=<a@example.com>",
            ReceiptLine("4AB", None, committed=True), id="discard"),
    ],
)
def test_receipt_lines_are_parsed(line: str, expected: ReceiptLine) -> None:
    assert parse_receipt(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("Nov 23 15:12:49 mx postfix/qmgr[78]: 4AB: removed", id="removed"),
        pytest.param("Nov 23 15:12:49 mx postfix/cleanup[77]: 4AB: milter-reject: "
                     "END-OF-MESSAGE from localhost[127.0.0.1]: 5.7.1 refused", id="rejected"),
        # The same words in a line of another program, or later in a line.
        pytest.param(f"Nov 23 15:12:49 mx postfix/smtpd[7]: 4AB: message-id=<{OURS.hex}@x.y>",
                     id="smtpd"),
        pytest.param("Nov 23 15:12:49 mx postfix/cleanup[77]: 4AB: warning: header Subject: "
                     "5AB: from=<x>, size=1, nrcpt=1 (queue active)", id="quoted-active"),
        pytest.param("Nov 23 15:12:49 mx postfix/qmgr[78]: 4AB: from=<a@b>, size=1, nrcpt=1 "
                     "(queue active) and more", id="trailing-text"),
    ],
)
def test_other_lines_are_no_receipts(line: str) -> None:
    assert parse_receipt(line) is None


async def receipts(pool: asyncpg.Pool) -> set[tuple[uuid.UUID, str, bool]]:
    rows = await pool.fetch("SELECT message_id, queue_id, committed FROM relay_receipts")
    return {(r["message_id"], r["queue_id"], r["committed"]) for r in rows}


async def test_the_follower_keeps_receipts_of_outbox_messages_only(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    waiting = await accepted(pool, "waiting@example.org")
    gone = uuid.uuid4()  # a message relayed and settled already: no outbox row
    first, second = new_queue_id("R"), new_queue_id("S")
    log_file.write_text(cleanup(first, f"<{waiting.hex}@example.com>") + active(first)
                        + cleanup(second, f"<{gone.hex}@example.com>") + active(second))
    await follower.poll()
    assert {r for r in await receipts(pool) if r[1] in (first, second)} == {
        (waiting, first, True)}
    async with pool.acquire() as conn:
        assert await committed_queue_id(conn, waiting) == first
    assert follower.caught_up.is_set()
    await pool.execute("DELETE FROM outbox WHERE message_id = $1", waiting)
    assert not {r for r in await receipts(pool) if r[0] == waiting}  # gone with its row


async def test_a_reused_queue_id_does_not_commit_an_earlier_receipt(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Ours was refused under the queue id; other mail got the id next and was queued."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    refused = await accepted(pool, "refused@example.org")
    queue_id = new_queue_id("U")
    log_file.write_text(cleanup(queue_id, f"<{refused.hex}@example.com>")
                        + cleanup(queue_id, "<other@mua.example>") + active(queue_id))
    await follower.poll()
    async with pool.acquire() as conn:
        assert await committed_queue_id(conn, refused) is None


@pytest.fixture
def log_read() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@pytest.fixture(autouse=True)
async def empty_outbox(pool: asyncpg.Pool) -> None:
    """Only this test's rows for its worker (the module's database is shared)."""
    await pool.execute("DELETE FROM outbox")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def outcomes(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("postwarden_relay_outcomes_total",
                                             {"outcome": outcome})


@pytest.fixture
async def worker(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], log_read: asyncio.Event,
    metrics: Metrics,
) -> AsyncIterator[RelayWorker]:
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=1),
                         log_read, metrics)
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=10)


async def interrupted(pool: asyncpg.Pool, recipient: str, receipt: tuple[str, bool] | None
                      ) -> uuid.UUID:
    """A row as a cut-off attempt leaves it (claimed, unsettled, its lease over), with
    what the follower read of it; in one transaction, so the worker sees all or nothing."""
    async with pool.acquire() as conn, conn.transaction():
        accepted = await enqueue(conn, submission(uuid.uuid4().hex, recipient), ROOMY,
                                 dt.datetime.now(dt.UTC))
        await conn.execute("UPDATE outbox SET attempts = 1, unsettled = true "
                           "WHERE message_id = $1", accepted.id)
        if receipt is not None:
            await conn.execute("INSERT INTO relay_receipts (message_id, queue_id, committed) "
                               "VALUES ($1, $2, $3)", accepted.id, *receipt)
    return accepted.id


def sent_to(server: Scripted, recipient: str) -> int:
    return sum(1 for _, recipients, _ in server.received if recipient in recipients)


async def test_an_interrupted_attempt_postfix_queued_is_not_sent_again(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker,
    caplog: pytest.LogCaptureFixture, metrics: Metrics,
) -> None:
    message = await interrupted(pool, "queued@example.org", ("QLOG1", True))
    worker.wake()
    row = await settled(pool, message)
    assert (row["status"], row["queue_id"], row["attempts"]) == ("relayed", "QLOG1", 2)
    assert sent_to(smtp_server[0], "queued@example.org") == 0
    assert (outcomes(metrics, "found_queued"), outcomes(metrics, "relayed")) == (1.0, None)
    assert "after Postfix queued it as QLOG1: not sending it again" in caplog.text


async def test_an_interrupted_attempt_postfix_did_not_queue_is_sent(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker,
    metrics: Metrics,
) -> None:
    message = await interrupted(pool, "refused@example.org", ("QLOG2", False))
    worker.wake()
    row = await settled(pool, message)
    assert row["status"] == "relayed" and row["queue_id"] != "QLOG2"
    assert sent_to(smtp_server[0], "refused@example.org") == 1
    assert (outcomes(metrics, "found_queued"), outcomes(metrics, "relayed")) == (None, 1.0)


@pytest.mark.parametrize("log_read", [None])
async def test_without_a_maillog_an_interrupted_attempt_is_sent_again(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = await interrupted(pool, "blind@example.org", ("QLOG3", True))
    worker.wake()
    row = await settled(pool, message)
    assert row["status"] == "relayed" and row["queue_id"] != "QLOG3"
    assert sent_to(smtp_server[0], "blind@example.org") == 1
    assert "without maillog_path nothing tells whether Postfix queued it" in caplog.text


async def test_a_deferred_attempt_is_not_taken_for_an_interrupted_one(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker,
    metrics: Metrics,
) -> None:
    server, _ = smtp_server
    server.data_replies[:] = ["451 4.3.0 try again later"]
    message = await accepted(pool, "deferred@example.org")
    worker.wake()
    for _ in range(300):
        if await pool.fetchval("SELECT count(*) FROM outbound_events WHERE message_id = $1 "
                               "AND event = 'relay_deferred'", message):
            break
        await asyncio.sleep(0.05)
    else:
        raise TimeoutError("the first attempt was not deferred")
    # A committed receipt would settle the row, were it taken for an interrupted one.
    await pool.execute("INSERT INTO relay_receipts (message_id, queue_id, committed) "
                       "VALUES ($1, 'QLOG4', true)", message)
    row = await settled(pool, message)
    assert (row["status"], row["attempts"]) == ("relayed", 2) and row["queue_id"] != "QLOG4"
    assert sent_to(server, "deferred@example.org") == 1
    assert (outcomes(metrics, "deferred"), outcomes(metrics, "relayed")) == (1.0, 1.0)


async def test_rows_a_stopping_worker_did_not_reach_are_released_settled(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int]
) -> None:
    """A stop between the messages of a claimed batch hands the rest back due and
    settled: nothing was attempted, so nothing needs the log when they come back."""
    server, port = smtp_server
    async with pool.acquire() as conn, conn.transaction():
        batch = [(await enqueue(conn, submission(uuid.uuid4().hex, f"b{n}@example.org"),
                                ROOMY, dt.datetime.now(dt.UTC))).id for n in range(3)]
    server.data_gate.clear()  # the first message's 250 waits
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1))
    worker.start()
    try:
        for _ in range(300):
            if server.received:
                break
            await asyncio.sleep(0.05)
        stopping = asyncio.create_task(worker.stop(grace=10))
        await asyncio.sleep(0.2)
        server.data_gate.set()
        await stopping
    finally:
        server.data_gate.set()
        await worker.stop(grace=10)
    rows = await pool.fetch("SELECT message_id, unsettled, next_attempt_at <= now() AS due "
                            "FROM outbox WHERE message_id = ANY($1::uuid[])", batch)
    assert len(rows) == 2 and all(r["due"] and not r["unsettled"] for r in rows)
    assert len(server.received) == 1
