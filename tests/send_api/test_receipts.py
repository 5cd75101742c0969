"""Interrupted relay attempts: Postfix's log says whether the message was queued.

Parsing the receipt lines, the follower keeping them for outbox rows, and the
relay worker settling an interrupted row from them instead of sending it
again (a scripted SMTP server stands in for Postfix; tests/send_api/test_e2e.py
runs the same through the real one).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send import maillog as maillog_module
from postwarden_admin_api.send import waitinglines
from postwarden_admin_api.send.interrupted import LOG_WAIT_SECONDS
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.receipts import (
    ReceiptLine,
    apply_receipts,
    parse_receipt,
)
from postwarden_admin_api.send.receipts import (
    committed as committed_at,
)
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import Claimed, RelayConfig, record
from postwarden_admin_api.send.submit import Outcome, SubmitResult
from postwarden_admin_api.send.syslogline import split_line
from tests.fixtures.scripted_smtp import Scripted, hang_up_after_data
from tests.fixtures.submissions import ROOMY, submission

from .test_maillog import (
    append,
    follower_at_end,
    line,
    message_status,
    new_queue_id,
    relay_as,
    sent,
)
from .test_relay import accepted, settled, until_true, until_waiting_on_a_lock

OURS = uuid.UUID("0f8e3a52c1d44b7e9a6b2c3d4e5f6a7b")
HOST = socket.gethostname()


async def _queue_id(conn: asyncpg.Connection, message: uuid.UUID) -> str | None:
    """The queue id under which a log showed ``message`` committed."""
    commit = await committed_at(conn, message)
    return None if commit is None else commit.queue_id


def cleanup(queue_id: str, message_id: str) -> str:
    return f"Nov 23 15:12:49 mx postfix/cleanup[77]: {queue_id}: message-id={message_id}\n"


def active(queue_id: str) -> str:
    return (f"Nov 23 15:12:49 mx postfix/qmgr[78]: {queue_id}: from=<app@example.com>, "
            "size=812, nrcpt=1 (queue active)\n")


PREFIX = "Nov 23 15:12:49 mx "


def receipt(line: str) -> ReceiptLine | None:
    """What the follower reads in ``line``: Postfix's lines only, then receipt lines."""
    split = split_line(line)
    return parse_receipt(split) if split is not None else None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(cleanup("4AB", f"<{OURS.hex}@example.com>"),
                     ReceiptLine("4AB", OURS, committed=False), id="our-message-id"),
        pytest.param(cleanup("4AB", "<20261123.x@mua.example>"),
                     ReceiptLine("4AB", None, committed=False, foreign=True),
                     id="other-message-id"),
        pytest.param(active("4AB"), ReceiptLine("4AB", None, committed=True), id="queue-active"),
        # Lines that start a queue id afresh: a message's first line, a reject.
        pytest.param(PREFIX + "postfix/postwarden-send/smtpd[7]: 4AB: client=localhost"
                     "[127.0.0.1]", ReceiptLine("4AB", None, committed=False), id="smtpd"),
        pytest.param(PREFIX + "postfix/pickup[8]: 4AB: uid=0 from=<root>",
                     ReceiptLine("4AB", None, committed=False), id="pickup"),
        pytest.param(PREFIX + "postfix/cleanup[77]: 4AB: milter-reject: END-OF-MESSAGE from "
                     "localhost[127.0.0.1]: 5.7.1 refused", ReceiptLine("4AB", None, False),
                     id="milter-reject"),
        pytest.param(PREFIX + "postfix/cleanup[77]: 4AB: reject: body x from localhost"
                     "[127.0.0.1]; from=<a@b>", ReceiptLine("4AB", None, False), id="reject"),
    ],
)
def test_receipt_lines_are_parsed(line: str, expected: ReceiptLine) -> None:
    assert receipt(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(PREFIX + "postfix/qmgr[78]: 4AB: removed", id="removed"),
        # cleanup discards while the message still arrives: no commit.
        pytest.param(PREFIX + "postfix-2/cleanup[77]: 4AB: discard: header X-Spam: yes from "
                     "localhost[127.0.0.1]; from=<a@example.com>", id="discard"),
        # The same words in a line of another program, or later in a line.
        pytest.param(PREFIX + f"postfix/smtpd[7]: 4AB: message-id=<{OURS.hex}@x.y>",
                     id="smtpd-message-id"),
        pytest.param(PREFIX + "postfix/cleanup[77]: 4AB: warning: header Subject: "
                     "5AB: from=<x>, size=1, nrcpt=1 (queue active)", id="quoted-active"),
        pytest.param(PREFIX + "postfix/qmgr[78]: 4AB: from=<a@b>, size=1, nrcpt=1 "
                     "(queue active) and more", id="trailing-text"),
        pytest.param(PREFIX + "dovecot: imap-login: user=<x postfix/qmgr[78]: 4AB: from=<a@b>, "
                     "size=1, nrcpt=1 (queue active)", id="inside-another-programs-line"),
    ],
)
def test_other_lines_are_no_receipts(line: str) -> None:
    assert receipt(line) is None


async def add_receipt(db: asyncpg.Pool | asyncpg.Connection, message: uuid.UUID,
                      queue_id: str, committed: bool, host: str = HOST) -> None:
    """A receipt as this host's follower stores it."""
    await db.execute("INSERT INTO relay_receipts (message_id, host, queue_id, committed) "
                     "VALUES ($1, $2, $3, $4)", message, host, queue_id, committed)


async def test_another_hosts_lines_leave_our_receipts_alone(pool: asyncpg.Pool) -> None:
    """Each Postfix has its own queue ids: the same id on another host is another file."""
    message = await accepted(pool, "elsewhere@example.org")
    await add_receipt(pool, message, "QSAME", False, host="mx-b")
    async with pool.acquire() as conn:
        await apply_receipts(conn, "mx-a", [ReceiptLine("QSAME", None, committed=True)])
        assert await _queue_id(conn, message) is None
        await apply_receipts(conn, "mx-b", [ReceiptLine("QSAME", None, committed=True)])
        assert await _queue_id(conn, message) == "QSAME"


class RecordedExecutes:
    """A connection whose execute() calls are recorded."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.executed: list[tuple[object, ...]] = []

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return await self._conn.fetch(query, *args)

    async def execute(self, query: str, *args: object) -> str:
        self.executed.append(args)
        return await self._conn.execute(query, *args)


async def test_only_lines_that_can_change_a_receipt_reach_the_database(
    pool: asyncpg.Pool
) -> None:
    """A busy server's log is mostly other mail: its lines cost a statement each."""
    open_one = await accepted(pool, "open@example.org")
    committed_one = await accepted(pool, "done@example.org")
    await add_receipt(pool, open_one, "QOPEN", False)
    await add_receipt(pool, committed_one, "QDONE", True)
    ours = await accepted(pool, "new@example.org")
    lines = [
        ReceiptLine("QOTHER1", None, committed=False),  # other mail arriving
        ReceiptLine("QNEW", None, committed=False),  # ours arriving: before its Message-ID
        ReceiptLine("QNEW", ours, committed=False),
        ReceiptLine("QOTHER1", None, committed=True),
        ReceiptLine("QDONE", None, committed=False),  # a committed receipt stays as it is
        ReceiptLine("QOPEN", None, committed=True),
        ReceiptLine("QNEW", None, committed=True),
    ]
    async with pool.acquire() as conn:
        recorded = RecordedExecutes(conn)
        await apply_receipts(cast(asyncpg.Connection, recorded), HOST, lines)
        await apply_receipts(cast(asyncpg.Connection, recorded), HOST, lines[:1])
    assert recorded.executed == [
        (HOST, ["QNEW", "QNEW", "QOPEN", "QNEW"], [None, ours, None, None],
         [False, False, True, True]),
    ]
    assert await receipts(pool) == {
        (open_one, "QOPEN", True), (committed_one, "QDONE", True), (ours, "QNEW", True)}


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
        assert await _queue_id(conn, waiting) == first
    await pool.execute("DELETE FROM outbox WHERE message_id = $1", waiting)
    assert not {r for r in await receipts(pool) if r[0] == waiting}  # gone with its row


@pytest.mark.parametrize(
    "after",
    [
        # Ours was refused under the queue id; other mail got the id next and was queued.
        pytest.param(lambda q: cleanup(q, "<other@mua.example>") + active(q),
                     id="queue-id-reused"),
        pytest.param(lambda q: (
            f"{PREFIX}postfix/cleanup[77]: {q}: milter-reject: END-OF-MESSAGE from x\n"
            f"{PREFIX}postfix/smtpd[9]: {q}: client=outside.example[192.0.2.1]\n" + active(q)),
            id="queue-id-reused-by-a-message-without-message-id"),
        # cleanup holds (header/body checks) as the text arrives: the client may still go
        # away. A milter's hold at end of message commits (test_review_held_receipt.py).
        pytest.param(lambda q: (
            f"{PREFIX}postfix/cleanup[77]: {q}: hold: body x from localhost[127.0.0.1]\n"),
            id="held"),
    ],
)
async def test_lines_after_ours_that_commit_nothing(
    pool: asyncpg.Pool, tmp_path: Path, after: Callable[[str], str]
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    message = await accepted(pool, "uncommitted@example.org")
    queue_id = new_queue_id("U")
    log_file.write_text(cleanup(queue_id, f"<{message.hex}@example.com>") + after(queue_id))
    await follower.poll()
    async with pool.acquire() as conn:
        assert await _queue_id(conn, message) is None


async def test_a_read_of_many_lines_keeps_every_receipt(pool: asyncpg.Pool, tmp_path: Path
                                                       ) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    ours = await accepted(pool, "among-many@example.org")
    queue_id = new_queue_id("M")
    others = [new_queue_id("O") for _ in range(12_000)]
    log_file.write_text(cleanup(queue_id, f"<{ours.hex}@example.com>") + active(queue_id)
                        + "".join(cleanup(q, "<x@mua.example>") + active(q) for q in others))
    await follower.poll()
    async with pool.acquire() as conn:
        assert await _queue_id(conn, ours) == queue_id


async def test_a_receipt_for_a_row_being_settled_waits_for_it(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The relay deletes the row (its outcome stored) while the follower reads the
    message-id line: the follower waits and skips the row instead of failing its poll."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    settling = await accepted(pool, "settling@example.org")
    log_file.write_text(cleanup(new_queue_id("K"), f"<{settling.hex}@example.com>"))
    async with pool.acquire() as relay, relay.transaction():
        await relay.execute("DELETE FROM outbox WHERE message_id = $1", settling)
        polling = asyncio.create_task(follower.poll())
        await asyncio.sleep(0.3)
        assert not polling.done()
    await polling
    assert not {r for r in await receipts(pool) if r[0] == settling}


async def test_a_delivery_line_awaiting_the_relay_outlives_its_reader(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service dies between Postfix's 250 and storing it, and Postfix delivers at
    once: the delivery line, read before its queue id was stored, is saved with the
    read position (lines about other mail are not), and the next reader applies it
    once the relay settles the row from the log, however long that takes."""
    monkeypatch.setattr(maillog_module, "LEASE_SECONDS", 0.5)
    monkeypatch.setattr(waitinglines, "PENDING_SECONDS", 0.2)
    log_file, first = await follower_at_end(pool, tmp_path)
    message = await accepted(pool, "fast@example.org")
    queue_id = new_queue_id("D")
    append(log_file, cleanup(queue_id, f"<{message.hex}@example.com>"), active(queue_id),
           sent(queue_id, "fast@example.org"), sent(new_queue_id("X"), "other@example.net"))
    await first.poll()  # and the service dies: no release, no last poll
    saved = await pool.fetchval("SELECT pending FROM maillog_positions WHERE path = $1",
                                f"{HOST}:{log_file}")
    assert [(line["queue_id"], line["recipient"]) for line in saved] == [
        (queue_id, "fast@example.org")]
    await asyncio.sleep(0.6)  # its lease lapses; longer than other lines wait
    second = MaillogFollower(pool, log_file)
    await second.poll()
    async with pool.acquire() as conn:  # the restarted relay, as for an interrupted row
        assert await _queue_id(conn, message) == queue_id
        await record(conn, RelayConfig("127.0.0.1", 25, 3, 1.0),
                     Claimed(message, "app@example.com", ["fast@example.org"], b"", 2, True),
                     SubmitResult(Outcome.QUEUED, "250 read from the log", queue_id))
    await second.poll()
    assert await message_status(pool, message) == "delivered"
    assert await pool.fetchval("SELECT pending FROM maillog_positions WHERE path = $1",
                               f"{HOST}:{log_file}") == []


async def test_a_line_for_a_message_yet_to_be_stored_waits_for_it_not_an_older_one(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Postfix queued a new message under an old one's queue id and the relay has yet to
    store its 250 (a group commit, an interrupted attempt): its line used to go to the
    old message, counted as applied, and the new one stayed relayed for good."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("REUSE")
    address = f"full-{uuid.uuid4().hex[:6]}@example.org"
    old = await accepted(pool, address)
    await relay_as(pool, old, queue_id)
    append(log_file, sent(queue_id, address))
    await follower.poll()
    new = await accepted(pool, address)
    append(log_file, cleanup(queue_id, f"<{new.hex}@example.com>"), active(queue_id),
           line(queue_id, address, "bounced", "5.2.2", "552 5.2.2 mailbox full"))
    await follower.poll()
    assert (await message_status(pool, old), await message_status(pool, new)) == (
        "delivered", "queued")
    await relay_as(pool, new, queue_id)
    await follower.poll()
    assert (await message_status(pool, old), await message_status(pool, new)) == (
        "delivered", "failed")
    assert await pool.fetchval("SELECT status FROM outbound_recipients WHERE message_id = $1",
                               new) == "bounced"


async def test_read_past_waits_for_a_poll_that_began_later(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    _, follower = await follower_at_end(pool, tmp_path)
    await follower.poll()
    waiting = asyncio.create_task(follower.read_past(time.monotonic()))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the poll before does not count
    await follower.poll()
    await asyncio.wait_for(waiting, 5)


@pytest.fixture
async def maillog(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[MaillogFollower]:
    """A follower of an (empty) log, running as in the service."""
    _, follower = await follower_at_end(pool, tmp_path)
    task = asyncio.create_task(follower.run())
    yield follower
    await stop_task(task)


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
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], maillog: MaillogFollower | None,
    metrics: Metrics,
) -> AsyncIterator[RelayWorker]:
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=1),
                         maillog, metrics)
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
        accepted = await enqueue(conn, submission(uuid.uuid4().hex, recipient), ROOMY)
        await conn.execute("UPDATE outbox SET attempts = 1, unsettled = true "
                           "WHERE message_id = $1", accepted.id)
        if receipt is not None:
            await add_receipt(conn, accepted.id, *receipt)
    return accepted.id


async def until(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """Wait (at most 15 s) until ``sql`` answers true."""
    for _ in range(300):
        if await pool.fetchval(sql, *args):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"never true: {sql}")


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
    assert (outcomes(metrics, "found_queued"), outcomes(metrics, "relayed")) == (1.0, 0.0)
    assert "after Postfix queued it as QLOG1: not sending it again" in caplog.text


async def test_an_interrupted_attempt_postfix_did_not_queue_is_sent(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker,
    metrics: Metrics,
) -> None:
    message = await interrupted(pool, "refused@example.org", ("QLOG2", False))
    # Taken in by cleanup an hour ago and never committed: no longer on its way in.
    await pool.execute("UPDATE relay_receipts SET seen_at = now() - interval '1 hour' "
                       "WHERE message_id = $1", message)
    worker.wake()
    row = await settled(pool, message)
    assert row["status"] == "relayed" and row["queue_id"] != "QLOG2"
    assert sent_to(smtp_server[0], "refused@example.org") == 1
    assert (outcomes(metrics, "found_queued"), outcomes(metrics, "relayed")) == (0.0, 1.0)


@pytest.mark.parametrize("maillog", [None])
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
    await until(pool, "SELECT count(*) > 0 FROM outbound_events WHERE message_id = $1 "
                "AND event = 'relay_deferred'", message)
    # A committed receipt would settle the row, were it taken for an interrupted one.
    await add_receipt(pool, message, "QLOG4", True)
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
                                ROOMY)).id for n in range(3)]
    server.data_gate.clear()  # the first message's 250 waits
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1))
    worker.start()
    try:
        await until_true(lambda: bool(server.received))
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


async def test_a_connection_lost_after_the_message_went_out_is_settled_from_the_log(
    pool: asyncpg.Pool, maillog: MaillogFollower, metrics: Metrics
) -> None:
    """No answer to the final dot: the row stays unsettled, and the next attempt
    finds Postfix's commit in the log instead of sending a second copy."""
    sent: list[bytes] = []
    server = await asyncio.start_server(functools.partial(hang_up_after_data, received=sent),
                                        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    message = await accepted(pool, "lost-answer@example.org")
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 5, 60.0, workers=1), maillog,
                         metrics)
    worker.start()
    try:
        await until(pool, "SELECT unsettled AND attempts = 1 FROM outbox WHERE message_id = $1",
                    message)
        await add_receipt(pool, message, "QLOST1", True)
        await pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE message_id = $1",
                           message)
        worker.wake()
        # The relay waits up to LOG_WAIT_SECONDS for the follower to read the log to its
        # end before it answers from it (15 s was not always enough under a loaded CI).
        row = await settled(pool, message, within=LOG_WAIT_SECONDS + 15)
    finally:
        await worker.stop(grace=10)
        server.close()
    assert (row["status"], row["queue_id"]) == ("relayed", "QLOST1")
    assert len(sent) == 1
    assert (outcomes(metrics, "deferred"), outcomes(metrics, "found_queued")) == (1.0, 1.0)


async def test_lines_dropped_while_postgres_was_away_void_uncommitted_receipts(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dropped line could have started a queue id afresh: no receipt it would have
    voided may be committed by a later line, so every uncommitted one goes."""
    monkeypatch.setattr(maillog_module, "MAX_PENDING_RECEIPTS", 4)
    log_file, follower = await follower_at_end(pool, tmp_path)
    pending, done = await accepted(pool, "pending@example.org"), await accepted(pool, "d@e.org")
    elsewhere = await accepted(pool, "elsewhere2@example.org")
    await add_receipt(pool, pending, "QP1", False)
    await add_receipt(pool, done, "QD1", True)
    await add_receipt(pool, elsewhere, "QE1", False, host="mx-b")  # another host's lines
    log_file.write_text("".join(cleanup(new_queue_id("X"), "<x@y>") for _ in range(10))
                        + active("QP1"))
    await follower.poll()
    assert "dropping the 7 oldest queue file lines waiting for the database, and every " \
        "receipt not yet committed" in caplog.text
    async with pool.acquire() as conn:
        assert (await _queue_id(conn, pending), await _queue_id(conn, done)
                ) == (None, "QD1")
    assert (elsewhere, "QE1", False) in await receipts(pool)


async def test_the_outbox_rows_of_a_poll_s_receipts_are_locked_in_one_order(
    pool: asyncpg.Pool,
) -> None:
    """In message_id order, as the relay locks those whose outcomes it stores together
    (migration 0017): a row the relay holds is waited for before any later one is
    locked. In log order, the follower held a later row the relay wanted while it
    waited for an earlier one the relay held: each waited for the other."""
    low, high = sorted([await accepted(pool, "low@example.org"),
                        await accepted(pool, "high@example.org")])
    lines = [ReceiptLine(new_queue_id("H"), high, committed=False),
             ReceiptLine(new_queue_id("L"), low, committed=False)]
    async with pool.acquire() as relaying, pool.acquire() as conn:
        storing = relaying.transaction()  # as the relay, deleting the row
        await storing.start()
        await relaying.execute("SELECT FROM outbox WHERE message_id = $1 FOR UPDATE", low)
        applying = asyncio.create_task(apply_receipts(conn, HOST, lines))
        await until_waiting_on_a_lock(pool, conn)
        await relaying.execute("SELECT FROM outbox WHERE message_id = $1 FOR UPDATE NOWAIT",
                               high)  # not locked yet: the follower waits for the first
        await storing.rollback()
        await applying
    assert {row["message_id"] for row in await pool.fetch(
        "SELECT message_id FROM relay_receipts WHERE message_id = ANY($1)", [low, high])
    } == {low, high}
