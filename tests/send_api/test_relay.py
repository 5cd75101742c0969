"""The relay worker against an SMTP server on loopback (aiosmtpd) and real Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.send import relay
from postwarden_admin_api.send.lease import BatchLease
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import (
    RelayConfig,
    Relayed,
    backoff,
    store_relayed,
)
from postwarden_admin_api.send.submit import Outcome, SmtpSession, SubmitResult
from postwarden_store import create_pool
from tests.conftest import PgServer
from tests.fixtures.clocks import shifted_datetime
from tests.fixtures.ports import free_port
from tests.fixtures.scripted_smtp import Scripted
from tests.fixtures.submissions import ROOMY, submission


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own (in place of the module's shared one), so its
    outbox starts empty: a relay worker sends whatever the outbox holds, and a row
    another test left there (given back unsettled, say) would be relayed here too."""
    return fresh_database_url


async def accepted(pool: asyncpg.Pool, *recipients: str) -> uuid.UUID:
    async with pool.acquire() as conn:
        message = await enqueue(
            conn, submission(uuid.uuid4().hex, *recipients), ROOMY)
    return message.id


async def settled(pool: asyncpg.Pool, message_id: uuid.UUID, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT m.*, (SELECT count(*) FROM outbox o WHERE o.message_id = m.id) AS waiting "
            "FROM outbound_messages m WHERE id = $1", message_id,
        )
        if row["status"] != "queued" and row["waiting"] == 0:
            return row
        await asyncio.sleep(0.05)
    raise TimeoutError("message not settled")


async def settled_once_served(pool: asyncpg.Pool, message_id: uuid.UUID, port: int
                              ) -> tuple[Scripted, Any]:
    """Start an SMTP server on ``port`` (Postfix back) and wait for the message to settle;
    the server's handler and the message's row."""
    handler = Scripted()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        return handler, await settled(pool, message_id)
    finally:
        controller.stop()


@pytest.fixture
async def worker(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int]
) -> AsyncIterator[RelayWorker]:
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=2))
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=10)


async def test_a_message_is_relayed_and_keeps_the_queue_id(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker
) -> None:
    handler, _ = smtp_server
    message_id = await accepted(pool, "a@example.org", "b@example.org")
    worker.wake()
    row = await settled(pool, message_id)
    assert row["status"] == "relayed" and row["queue_id"].startswith("Q")
    assert row["attempts"] == 1
    (received,) = [r for r in handler.received if r[1] == ("a@example.org", "b@example.org")]
    assert received[0] == "app@example.com"
    statuses = await pool.fetch(
        "SELECT status FROM outbound_recipients WHERE message_id = $1", message_id
    )
    assert {r["status"] for r in statuses} == {"relayed"}


async def test_a_message_accepted_on_a_host_whose_clock_runs_ahead_is_relayed_at_once(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The relay claims by the database's clock; the enqueue was given the service's
    (its rate windows, the message's times), and the row was due only once the
    database's clock reached it: ten minutes ahead, every message waited ten minutes."""
    monkeypatch.setattr(dt, "datetime", shifted_datetime(dt.timedelta(minutes=10)))
    async with pool.acquire() as conn:
        message = await enqueue(conn, submission(uuid.uuid4().hex, "soon@example.org"),
                                ROOMY)
    worker.wake()
    row = await settled(pool, message.id)
    assert row["status"] == "relayed"


async def test_the_relay_names_the_host_whose_postfix_queued_the_message(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], tmp_path: Path
) -> None:
    """Delivery lines are about a queue id of one host's Postfix (migration 0018)."""
    maillog = tmp_path / "maillog"
    maillog.write_text("")
    follower = MaillogFollower(pool, maillog, host="mx-7")
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=1),
                         maillog=follower)
    worker.start()
    try:
        message_id = await accepted(pool, "a@example.org")
        worker.wake()
        row = await settled(pool, message_id)
    finally:
        await worker.stop(grace=10)
    assert (row["status"], row["queue_host"]) == ("relayed", "mx-7")


async def test_4xx_is_retried_then_relayed(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker
) -> None:
    handler, _ = smtp_server
    handler.data_replies[:] = ["451 4.3.0 try again later"]
    message_id = await accepted(pool, "retry@example.org")
    row = await settled(pool, message_id)
    assert (row["status"], row["attempts"]) == ("relayed", 2)
    events = await pool.fetch(
        "SELECT event, detail FROM outbound_events WHERE message_id = $1 ORDER BY id", message_id
    )
    assert [e["event"] for e in events] == ["accepted", "relay_deferred", "relayed"]
    assert events[1]["detail"] == "451 4.3.0 try again later"


async def test_5xx_fails_the_message_with_the_reply(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker
) -> None:
    handler, _ = smtp_server
    handler.data_replies[:] = ["554 5.7.1 rejected by policy token=abcdefghijkl"]
    message_id = await accepted(pool, "refused@example.org")
    row = await settled(pool, message_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"] == "554 5.7.1 rejected by policy token=[REDACTED]"


async def test_a_refused_recipient_fails_alone(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], worker: RelayWorker
) -> None:
    handler, _ = smtp_server
    handler.rcpt_replies["nobody@example.org"] = "550 5.1.1 no such user"
    message_id = await accepted(pool, "nobody@example.org", "somebody@example.org")
    row = await settled(pool, message_id)
    assert row["status"] == "relayed"
    statuses = dict(await pool.fetch(
        "SELECT address, status FROM outbound_recipients WHERE message_id = $1", message_id
    ))
    assert statuses == {"nobody@example.org": "failed", "somebody@example.org": "relayed"}


async def test_a_recipient_refused_beside_a_deferred_one_fails_with_its_own_reply(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int]
) -> None:
    """One recipient deferred (452) retries the whole message; when it still is at the
    last attempt, a recipient refused with 5xx keeps its own reply, not the 452."""
    handler, port = smtp_server
    handler.rcpt_replies["nobody@example.org"] = "550 5.1.1 no such user"
    handler.rcpt_replies["later@example.org"] = "452 4.5.3 try later"
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 2, 0.05, workers=1))
    message_id = await accepted(pool, "nobody@example.org", "later@example.org")
    worker.start()
    try:
        row = await settled(pool, message_id)
    finally:
        await worker.stop(grace=10)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    details = dict(await pool.fetch(
        "SELECT address, detail FROM outbound_recipients WHERE message_id = $1", message_id
    ))
    assert details == {"nobody@example.org": "550 5.1.1 no such user",
                       "later@example.org": "452 4.5.3 try later"}


async def test_an_unreachable_postfix_costs_no_attempt_and_loses_nothing(
    pool: asyncpg.Pool,
) -> None:
    port = free_port()
    metrics = Metrics()
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 2, 0.02, workers=1),
                         metrics=metrics)
    message_id = await accepted(pool, "later@example.org")
    worker.start()
    try:
        await wait_until_counted(metrics, "unreachable", 4)  # twice the attempts allowed
        row = await pool.fetchrow(
            "SELECT m.status, m.attempts, o.attempts AS claimed, o.unsettled FROM "
            "outbound_messages m JOIN outbox o ON o.message_id = m.id WHERE m.id = $1",
            message_id,
        )
        assert dict(row) == {"status": "queued", "attempts": 0, "claimed": 0,
                             "unsettled": False}
        handler, row = await settled_once_served(pool, message_id, port)
    finally:
        await worker.stop(grace=10)
    assert (row["status"], row["attempts"]) == ("relayed", 1)
    assert [r[1] for r in handler.received] == [("later@example.org",)]


async def test_a_postfix_unreachable_for_a_long_outage_is_still_waited_for(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past 1025 unreachable claims in a row (some 17 hours of pauses at their longest),
    the pause's backoff was 2 ** 1025 times the setting: no float, an OverflowError that
    ended the worker's task, so nothing was sent once Postfix was back."""
    monkeypatch.setattr(relay, "UNREACHABLE_PAUSE_MAX", 0.0)  # the outage in seconds
    port = free_port()
    metrics = Metrics()
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 2, 30.0, workers=1),
                         metrics=metrics)
    message_id = await accepted(pool, "after-the-weekend@example.org")
    worker.start()
    try:
        await wait_until_counted(metrics, "unreachable", 1100, within=60.0)
        _, row = await settled_once_served(pool, message_id, port)
    finally:
        await worker.stop(grace=10)
    assert (row["status"], row["attempts"]) == ("relayed", 1)


@contextlib.asynccontextmanager
async def hanging_up(port: int) -> AsyncIterator[list[None]]:
    """A Postfix that cannot be reached, on ``port``: each connection is taken and closed
    before any greeting. Yields its tries, one item each, as they come."""
    tries: list[None] = []

    def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tries.append(None)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", port)
    try:
        yield tries
    finally:
        server.close()
        await server.wait_closed()


UNREACHABLE_LINE = re.compile(r"relay: Postfix at 127\.0\.0\.1:\d+ cannot be reached \(.*\); "
                              r"1 claimed message\(s\) wait in the outbox, trying again in "
                              r"(\S+) s")


def pauses_said(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The pause each warning of an unreachable Postfix announced, in order."""
    said = [UNREACHABLE_LINE.fullmatch(r.getMessage()) for r in caplog.records
            if "cannot be reached" in r.getMessage()]
    assert all(said), caplog.text
    return [float(match[1]) for match in said if match]


async def said_at_least(caplog: pytest.LogCaptureFixture, count: int,
                        within: float = 30.0) -> list[float]:
    deadline = time.monotonic() + within
    while len(pauses := pauses_said(caplog)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} warnings: {pauses}"
        await asyncio.sleep(0.01)
    return pauses


async def test_the_relay_workers_share_one_pause_while_postfix_is_unreachable(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each of the relay_workers paused on its own: with Postfix away, the next idle one
    took the message given back and tried it at once, each with its warning (8 workers:
    32 warnings in 2.5 minutes for one message). Now one pause holds them all: one try
    and one warning per step, the pause grown at each, and started again from its first
    step once Postfix answered."""
    # Idle workers claim often, so that they would claim within any pause not theirs.
    monkeypatch.setattr(relay, "POLL_SECONDS", 0.005)
    port = free_port()
    config = RelayConfig("127.0.0.1", port, 2, 0.01, workers=8)
    worker = RelayWorker(pool, config)
    message_id = await accepted(pool, "later@example.org")
    try:
        async with hanging_up(port) as tries:
            worker.start()
            await said_at_least(caplog, 6)
            pauses, tried = pauses_said(caplog), len(tries)  # at once: no try in between
            row = await pool.fetchrow("SELECT status, attempts FROM outbound_messages "
                                      "WHERE id = $1", message_id)
        assert tried - len(pauses) in (0, 1), (tried, pauses)  # 1: its warning to come
        assert pauses == sorted(set(pauses)), pauses  # grown at each try
        assert pauses[0] <= 0.0125  # the first step's: 0.01 s, jitter +25% at most
        assert (row["status"], row["attempts"]) == ("queued", 0)
        _, row = await settled_once_served(pool, message_id, port)
        assert (row["status"], row["attempts"]) == ("relayed", 1)
        async with hanging_up(port):
            await accepted(pool, "again@example.org")
            worker.wake()
            after = (await said_at_least(caplog, len(pauses) + 1))[len(pauses)]
        assert after <= 0.0125  # the first step again
    finally:
        await worker.stop(grace=10)


def test_backoff_stays_at_its_cap_however_many_attempts() -> None:
    config = RelayConfig("127.0.0.1", 25, 8, 30.0)
    assert 2700 <= backoff(config, 5000).total_seconds() <= 4500


async def test_rows_given_back_still_say_an_earlier_attempt_was_interrupted(
    pool: asyncpg.Pool,
) -> None:
    metrics = Metrics()
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", free_port(), 2, 0.02, workers=1),
                         metrics=metrics)
    message_id = await accepted(pool, "cut-off@example.org")
    await pool.execute("UPDATE outbox SET unsettled = true WHERE message_id = $1", message_id)
    worker.start()
    try:
        await wait_until_counted(metrics, "unreachable", 2)
    finally:
        await worker.stop(grace=10)
    row = await pool.fetchrow("SELECT attempts, unsettled FROM outbox WHERE message_id = $1",
                              message_id)
    assert dict(row) == {"attempts": 0, "unsettled": True}


async def test_a_connection_lost_in_a_transaction_counts_as_an_attempt(
    pool: asyncpg.Pool,
) -> None:
    async def hang_up_at_mail(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                              ) -> None:
        writer.write(b"220 ready\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250 relay.test\r\n")
        await reader.readline()  # MAIL
        writer.close()

    server = await asyncio.start_server(hang_up_at_mail, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.02, workers=1))
    message_id = await accepted(pool, "nowhere@example.org")
    worker.start()
    try:
        row = await settled(pool, message_id)
    finally:
        await worker.stop(grace=10)
        server.close()
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert row["last_error"].startswith("connection failed: ")


async def wait_until_counted(metrics: Metrics, outcome: str, count: int,
                             within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while (metrics.registry.get_sample_value("postwarden_relay_outcomes_total",
                                             {"outcome": outcome}) or 0) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {outcome} outcomes"
        await asyncio.sleep(0.02)


def test_backoff_grows_with_jitter() -> None:
    config = RelayConfig("127.0.0.1", 25, 8, 10.0)
    first = [backoff(config, 1).total_seconds() for _ in range(50)]
    third = [backoff(config, 3).total_seconds() for _ in range(50)]
    assert all(7.5 <= s <= 12.5 for s in first) and len(set(first)) > 1
    assert all(30 <= s <= 50 for s in third)
    assert backoff(config, 40).total_seconds() <= 3600 * 1.25


async def test_an_unexpected_error_does_not_end_a_worker(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    claim = RelayWorker._claim
    failures: list[RelayWorker] = []

    async def fails_once(self: RelayWorker) -> Any:
        if not failures:
            failures.append(self)
            raise RuntimeError("a bug, not an outage")
        return await claim(self)

    monkeypatch.setattr(RelayWorker, "_claim", fails_once)
    message_id = await accepted(pool, "later@example.org")
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", smtp_server[1], 3, 0.05, workers=1))
    worker.start()
    try:
        row = await settled(pool, message_id)
    finally:
        await worker.stop(grace=10)
    assert failures and row["status"] == "relayed"
    assert "relay worker: unexpected error (RuntimeError), trying again" in caplog.text


def short_lease(monkeypatch: pytest.MonkeyPatch, lease: float, submit: float) -> None:
    """Leases of ``lease`` s, submits cut off past ``submit`` s, no margin between."""
    monkeypatch.setattr(relay, "LEASE", dt.timedelta(seconds=lease))
    monkeypatch.setattr(relay, "SUBMIT_SECONDS", submit)
    monkeypatch.setattr(relay, "LEASE_MARGIN_SECONDS", 0.0)


async def test_an_answer_postgres_could_not_store_is_stored_later_not_sent_again(
    fresh_database_url: str, pg_server: PgServer, smtp_server: tuple[Scripted, int],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Postfix queues the message while its database is unreachable: the answer waits
    for Postgres, and the row does not come back to be sent again when its lease ends."""
    short_lease(monkeypatch, 1.0, 0.9)
    server, port = smtp_server
    database = fresh_database_url.rsplit("/", 1)[1]
    pool = await create_pool(fresh_database_url, min_size=1, max_size=4)
    admin = await asyncpg.connect(pg_server.admin_dsn)
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1))
    try:
        message_id = await accepted(pool, "once@example.org")
        server.data_gate.clear()
        worker.start()
        await until_true(lambda: bool(server.received))
        # The database goes away while Postfix holds the message, before it answers.
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1", database)
        server.data_gate.set()
        await asyncio.sleep(1.5)  # the lease runs out while the database is away
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        row = await settled(pool, message_id)
        await asyncio.sleep(1.0)  # a worker that had given up would have claimed it again
        assert (row["status"], row["queue_id"]) == ("relayed", "Q1X")
        assert len(server.received) == 1
        # The reason and the id Postfix's log and mailq know the message by.
        told = re.search(rf"cannot store the outcome of message {message_id} \((\w+): (.+), "
                         r"Postfix queue id Q1X\)", caplog.text)
        assert told is not None, caplog.text
    finally:
        server.data_gate.set()
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await worker.stop(grace=10)
        await pool.close()


async def until_true(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


async def test_a_slow_batch_keeps_its_rows_from_other_workers(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each end of DATA takes longer than a third of the lease: the rows still to go
    are leased again, so the other worker never claims (and sends) them too."""
    short_lease(monkeypatch, 1.2, 1.0)
    monkeypatch.setattr(relay, "POLL_SECONDS", 0.05)
    received: list[str] = []

    async def slow_postfix(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow.test\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-slow.test\r\n250 PIPELINING\r\n")
            elif verb == b"RCPT":
                received.append(line[9:].strip(b"<>\r\n").decode())
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                await asyncio.sleep(0.45)
                writer.write(f"250 2.0.0 Ok: queued as S{len(received)}\r\n".encode())
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow_postfix, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with pool.acquire() as conn, conn.transaction():
        batch = [(await enqueue(conn, submission(uuid.uuid4().hex, f"slow{n}@example.org"),
                                ROOMY)).id for n in range(4)]
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=2))
    worker.start()
    try:
        for message in batch:
            await settled(pool, message)
        await asyncio.sleep(0.3)
    finally:
        await worker.stop(grace=10)
        server.close()
    assert sorted(received) == [f"slow{n}@example.org" for n in range(4)]  # each once


async def test_a_submit_past_its_bound_is_cut_off_before_its_lease_could_end(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postfix does not answer the final dot (a slow milter): the submit is cut off at
    its bound, well within the lease, so no other worker can claim the row while it is
    still being submitted. The message went out, so the row stays unsettled: Postfix's
    log decides at its next claim whether it is sent again."""
    short_lease(monkeypatch, 2.0, 0.5)
    handler, port = smtp_server
    handler.data_gate.clear()
    message_id = await accepted(pool, "once@example.org")
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 60.0, workers=2))
    worker.start()
    try:
        await until_async(lambda: pool.fetchval(
            "SELECT EXISTS (SELECT FROM outbound_events WHERE message_id = $1 "
            "AND event = 'relay_deferred')", message_id))
        row = await pool.fetchrow("SELECT o.attempts, o.unsettled, m.last_error FROM outbox o "
                                  "JOIN outbound_messages m ON m.id = o.message_id "
                                  "WHERE o.message_id = $1", message_id)
    finally:
        handler.data_gate.set()
        await worker.stop(grace=10)
    assert [r[1] for r in handler.received] == [("once@example.org",)]
    assert (row["attempts"], row["unsettled"]) == (1, True)
    assert row["last_error"] == "no answer within 0.5 s"


async def test_rows_whose_lease_ran_out_unrenewed_are_given_back_unsent(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch held up (a busy event loop, say) until its lease ran out: another worker
    may have claimed its rows meanwhile, so none is sent; they are given back."""
    short_lease(monkeypatch, 0.3, 0.2)
    handler, port = smtp_server
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1))
    for n in range(2):
        await accepted(pool, f"late{n}@example.org")
    claimed = time.monotonic()
    rows = await worker._claim()
    await until_async(lambda: pool.fetchval("SELECT bool_and(next_attempt_at < now()) "
                                            "FROM outbox"))
    session = SmtpSession("127.0.0.1", port, 5.0, "relay.test")
    try:
        await worker._relay(session, rows, claimed, worker._unreachable.step)
    finally:
        await session.close()
    assert handler.received == []
    given_back = await pool.fetch("SELECT attempts, next_attempt_at <= now() AS due "
                                  "FROM outbox")
    assert [tuple(r) for r in given_back] == [(0, True), (0, True)]
    assert "lease of 2 claimed message(s) cannot be proven" in caplog.text
    assert lease_tasks() == []
    await worker.stop()


async def test_a_lease_postgres_cannot_renew_is_unproven_until_renewed_again(
    fresh_database_url: str, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay, "LEASE", dt.timedelta(seconds=0.6))
    database = fresh_database_url.rsplit("/", 1)[1]
    pool = await create_pool(fresh_database_url, min_size=1, max_size=4)
    admin = await asyncpg.connect(pg_server.admin_dsn)
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", free_port(), 3, 0.05, workers=1))
    try:
        await accepted(pool, "kept@example.org")
        claimed = time.monotonic()
        lease = BatchLease(worker._renew, await worker._claim(), since=claimed,
                           seconds=relay.LEASE.total_seconds(),
                           retry_seconds=relay.RECORD_RETRY_MAX)
        try:
            assert lease.proven()
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1", database)
            await until_true(lambda: not lease.proven())
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await until_true(lease.proven)  # nobody claimed the row meanwhile: still ours
            assert lease.lost == set()
        finally:
            await lease.stop()
        assert lease_tasks() == []
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await worker.stop()
        await pool.close()


async def test_a_worker_cancelled_mid_submit_leaves_no_lease_renewing(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int]
) -> None:
    handler, port = smtp_server
    handler.data_gate.clear()
    await accepted(pool, "cut-short@example.org")
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1))
    worker.start()
    try:
        await until_true(lambda: bool(handler.received))
        assert len(lease_tasks()) == 1  # renewing while Postfix has not answered
        await worker.stop(grace=0)  # cancels the submit
    finally:
        handler.data_gate.set()
        await worker.stop(grace=10)
    assert lease_tasks() == []


async def test_a_stop_past_its_grace_gives_back_the_rows_not_yet_tried(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int]
) -> None:
    """Stopped while Postfix has yet to answer the batch's first message: the rows after
    it were left claimed, and came back as though their attempt had gone out unanswered;
    one at its last attempt was failed ("no answer to the message sent in the last
    attempt") though it was never sent."""
    handler, port = smtp_server
    config = RelayConfig("127.0.0.1", port, 1, 0.05, workers=1)  # each claim the last
    handler.data_gate.clear()
    await accepted(pool, "first@example.org")
    untried = await accepted(pool, "second@example.org")
    worker = RelayWorker(pool, config)
    worker.start()
    try:
        await until_true(lambda: bool(handler.received))
        await worker.stop(grace=0.1)  # cancels the submit under way
    finally:
        handler.data_gate.set()
        await worker.stop(grace=10)
    row = await pool.fetchrow("SELECT attempts, unsettled, next_attempt_at <= now() AS due "
                              "FROM outbox WHERE message_id = $1", untried)
    assert dict(row) == {"attempts": 0, "unsettled": False, "due": True}
    after = RelayWorker(pool, config)
    after.start()
    try:
        settled_row = await settled(pool, untried)
    finally:
        await after.stop(grace=10)
    assert (settled_row["status"], settled_row["attempts"]) == ("relayed", 1)


def lease_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks()
            if t.get_name() == "postwarden-relay-lease" and not t.done()]


async def test_rows_claimed_again_meanwhile_are_neither_given_back_nor_kept(
    pool: asyncpg.Pool,
) -> None:
    """Postgres away longer than the lease: another worker may have claimed the rows
    left in a batch. Giving them back would reset its claim (a second send), and
    renewing them would keep sending them here too."""
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", free_port(), 3, 0.02, workers=1))
    ours, theirs = (await accepted(pool, "ours@example.org"),
                    await accepted(pool, "theirs@example.org"))
    rows = await worker._claim()
    assert {r.id for r in rows} == {ours, theirs}
    # The lease ran out and another worker claimed this one: one more attempt.
    await pool.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = "
                       "now() + interval '1 hour' WHERE message_id = $1", theirs)
    before = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", theirs)
    assert await worker._renew(rows) == {theirs}
    await worker._unlease(rows)
    assert await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", theirs) == before
    given_back = await pool.fetchrow(
        "SELECT attempts, unsettled, next_attempt_at <= now() AS due FROM outbox "
        "WHERE message_id = $1", ours)
    assert dict(given_back) == {"attempts": 0, "unsettled": False, "due": True}
    await worker.stop()


def queued(queue_id: str, **refused: str) -> SubmitResult:
    return SubmitResult(Outcome.QUEUED, f"250 queued as {queue_id}", queue_id, refused)


async def test_outcomes_stored_together_are_stored_each_as_alone(pool: asyncpg.Pool) -> None:
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", free_port(), 3, 0.02, workers=1))
    first = await accepted(pool, "a@example.org", "nobody@example.org")
    second = await accepted(pool, "b@example.org")
    rows = {r.id: r for r in await worker._claim()}
    async with pool.acquire() as conn:
        await store_relayed(conn, [
            Relayed(rows[first], queued("QA", **{"nobody@example.org": "550 5.1.1 no"})),
            Relayed(rows[second], queued("QB"), found_in_log=True),
        ])
    messages = await pool.fetch(
        "SELECT id, status, queue_id, attempts FROM outbound_messages WHERE id = ANY($1)",
        [first, second])
    assert {tuple(m) for m in messages} == {(first, "relayed", "QA", 1),
                                             (second, "relayed", "QB", 1)}
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = ANY($1)",
                               [first, second]) == 0
    recipients = await pool.fetch(
        "SELECT address, status, detail FROM outbound_recipients WHERE message_id = ANY($1)",
        [first, second])
    assert {tuple(r) for r in recipients} == {
        ("a@example.org", "relayed", None), ("nobody@example.org", "failed", "550 5.1.1 no"),
        ("b@example.org", "relayed", None)}
    events = await pool.fetch(
        "SELECT message_id, event, detail FROM outbound_events WHERE message_id = ANY($1) "
        "AND event <> 'accepted'", [first, second])
    assert sorted(tuple(e) for e in events) == sorted([
        (first, "relayed", "QA"), (first, "failed", "550 5.1.1 no"), (second, "relayed", "QB"),
        (second, "found_in_log", None)])
    await worker.stop()


async def test_answers_arriving_while_one_is_stored_are_stored_together(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each task waits for its own answer to be stored before it sends its next message,
    as it did when each answer took a statement of its own."""
    stores: list[int] = []
    first_stored = asyncio.Event()
    store = relay.store_relayed

    async def gated(conn: asyncpg.Connection, outcomes: list[Relayed],
                    queue_host: str | None = None) -> None:
        stores.append(len(outcomes))
        if len(stores) == 1:
            await first_stored.wait()
        await store(conn, outcomes, queue_host)

    monkeypatch.setattr(relay, "store_relayed", gated)
    monkeypatch.setattr(relay, "BATCH", 1)  # a message for each task
    handler, port = smtp_server
    messages = [await accepted(pool, f"t{n}@example.org") for n in range(3)]
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=3))
    worker.start()
    try:
        await until_true(lambda: len(handler.received) == 3)
        await asyncio.sleep(0.2)  # the other two answers arrive while the first is stored
        first_stored.set()
        for message in messages:
            await settled(pool, message)
    finally:
        await worker.stop(grace=10)
    assert stores == [1, 2]


async def until_waiting_on_a_lock(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    pid = conn.get_server_pid()
    await until_async(lambda: pool.fetchval(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid))


async def until_async(condition: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def test_outbox_rows_stored_together_are_locked_in_one_order(pool: asyncpg.Pool) -> None:
    """In message_id order, as the maillog follower locks them (migration 0017): a row
    another transaction holds is waited for before any later one is locked, so two
    transactions that each want several never wait for each other in a cycle."""
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", free_port(), 3, 0.02, workers=1))
    for n in range(2):
        await accepted(pool, f"o{n}@example.org")
    low, high = sorted(await worker._claim(), key=lambda row: row.id)
    async with pool.acquire() as holder, pool.acquire() as conn:
        reading = holder.transaction()  # as the follower, adding a receipt for it
        await reading.start()
        await holder.execute("SELECT FROM outbox WHERE message_id = $1 FOR KEY SHARE", low.id)
        storing = asyncio.create_task(store_relayed(
            conn, [Relayed(high, queued("QH")), Relayed(low, queued("QL"))]))
        await until_waiting_on_a_lock(pool, conn)
        await holder.execute("SELECT FROM outbox WHERE message_id = $1 FOR KEY SHARE NOWAIT",
                             high.id)  # not locked yet: the storing waits for the first
        await reading.rollback()
        await storing
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = ANY($1)",
                               [low.id, high.id]) == 0
    await worker.stop()


async def test_an_outcome_whose_message_is_no_longer_stored_holds_up_no_other(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], caplog: pytest.LogCaptureFixture,
) -> None:
    """Postfix queues a message whose stored rows are gone meanwhile (a PostgreSQL crash
    with synchronous_commit off loses the commit that stored it): its outcome can never
    be stored, so the worker says so and goes on to the next message of its batch,
    instead of trying again until it stops."""
    server, port = smtp_server
    lost = await accepted(pool, "lost@example.org")
    kept = await accepted(pool, "kept@example.org")
    server.data_gate.clear()
    metrics = Metrics()
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1),
                         metrics=metrics)
    worker.start()
    try:
        await until_true(lambda: bool(server.received))
        first = server.received[0][1][0]
        gone, other = (lost, kept) if first == "lost@example.org" else (kept, lost)
        await pool.execute("DELETE FROM outbound_messages WHERE id = $1", gone)
        server.data_gate.set()
        row = await settled(pool, other, within=10)
        assert row["status"] == "relayed"
        assert f"message {gone} is no longer stored" in caplog.text
        assert metrics.registry.get_sample_value(
            "postwarden_relay_outcomes_total", {"outcome": "lost"}) == 1
    finally:
        server.data_gate.set()
        await worker.stop(grace=10)


async def test_a_250_stored_late_by_a_claim_since_taken_over_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    """A worker cut off from Postgres past its lease stores Postfix's 250 once it is back,
    after the claim that took the row over read the same answer from the log and the
    message was delivered since: the message went back to ``relayed``, and its timeline
    got a second ``relayed`` event (a second send.queued webhook)."""
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", free_port(), 3, 0.02, workers=1))
    message = await accepted(pool, "late@example.org")
    [stale] = await worker._claim()
    await pool.execute("UPDATE outbox SET next_attempt_at = now()")  # its lease ran out
    [current] = await worker._claim()
    assert current.interrupted and current.attempts == stale.attempts + 1
    async with pool.acquire() as conn:
        await store_relayed(conn, [Relayed(current, queued("QL"), found_in_log=True)])
        # As the maillog follower stores a delivery line about QL.
        await conn.execute("UPDATE outbound_messages SET status = 'delivered' WHERE id = $1",
                           message)
        await store_relayed(conn, [Relayed(stale, queued("QL"))])
    row = await pool.fetchrow("SELECT status, attempts FROM outbound_messages WHERE id = $1",
                              message)
    assert tuple(row) == ("delivered", current.attempts)
    assert await pool.fetchval("SELECT count(*) FROM outbound_events WHERE message_id = $1 "
                               "AND event = 'relayed'", message) == 1
    await worker.stop()


# The backend noting an interrupted row's new attempt (relay.SENDING), blocked on a lock.
NOTING_BLOCKED = """
SELECT pid FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE outbox SET sending_until%'
"""


async def test_a_batch_cut_off_by_a_failed_query_gives_back_its_rows_not_sent(
    pool: asyncpg.Pool, database_url: str,
) -> None:
    """A query of the batch's cut off (Postgres restarting ends its backend) left the
    rows not yet sent claimed: back only when their lease ended, 15 minutes later, as
    attempts cut off (one at its last attempt would then fail as sent unanswered)."""
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", free_port(), 3, 0.02, workers=1))
    messages = {await accepted(pool, f"cut{n}@example.org") for n in range(3)}
    # An earlier attempt of each was interrupted: the relay notes its new one first.
    await pool.execute("UPDATE outbox SET unsettled = true")
    rows = sorted(await worker._claim(), key=lambda row: row.id)
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT FROM outbox WHERE message_id = $1 FOR UPDATE",
                                 rows[0].id)
            session = SmtpSession("127.0.0.1", free_port(), 5.0, "relay.test")
            relaying = asyncio.create_task(worker._relay(session, rows, time.monotonic(),
                                                              worker._unreachable.step))
            await until_async(lambda: pool.fetchval(NOTING_BLOCKED))
            await holder.execute("SELECT pg_terminate_backend($1)",
                                 await pool.fetchval(NOTING_BLOCKED))
        with pytest.raises(relay.DB_ERRORS):
            await relaying
    finally:
        await holder.close()
    outbox = await pool.fetch("SELECT message_id, attempts, unsettled, "
                              "next_attempt_at <= now() AS due FROM outbox")
    assert {tuple(r) for r in outbox} == {(m, 0, True, True) for m in messages}
    await worker.stop()
