"""A submit starts only while its row's lease outlasts the submit's bound.

A batch's lease nearly spent when a submit started (a slow batch, a renewal that
failed): with Postgres then out of reach or Postfix slow, the lease ran out while
the message was still being submitted, and another worker claimed the row and sent
it too. The lease is now renewed before such a submit (SUBMIT_SECONDS and the
margin, whatever renewals do meanwhile), and a row another worker claimed
meanwhile is left to it unsent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import Claimed, RelayConfig
from postwarden_admin_api.send.submit import SmtpSession

from .test_relay import accepted, database_url, short_lease  # noqa: F401 - a fixture

LEASE, SUBMIT, SPENT = 60.0, 40.0, 30.0  # seconds; a claim SPENT ago has less than SUBMIT left
LEASE_LEFT = "SELECT extract(epoch FROM next_attempt_at - now()) FROM outbox WHERE message_id = $1"


class Postfix:
    """An SMTP server on loopback that notes, at each MAIL, how long the row's lease
    (in Postgres) has left."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.lease_left: list[float] = []
        self.message: uuid.UUID | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 lease.test\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"MAIL":
                self.lease_left.append(float(await self.pool.fetchval(LEASE_LEFT, self.message)))
            if verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 2.0.0 Ok: queued as L1\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def postfix(pool: asyncpg.Pool) -> AsyncIterator[tuple[Postfix, int]]:
    server = Postfix(pool)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    try:
        yield server, listening.sockets[0].getsockname()[1]
    finally:
        listening.close()
        await listening.wait_closed()


async def nearly_spent(pool: asyncpg.Pool, worker: RelayWorker, server: Postfix
                       ) -> tuple[list[Claimed], float]:
    """One row claimed SPENT seconds ago, as Postgres and the worker both count it."""
    server.message = await accepted(pool, "late@example.org")
    rows = await worker._claim()
    await pool.execute("UPDATE outbox SET next_attempt_at = now() + $2 * interval '1 second' "
                       "WHERE message_id = $1", server.message, LEASE - SPENT)
    return rows, time.monotonic() - SPENT


async def relay(worker: RelayWorker, port: int, rows: list[Claimed], claimed: float) -> None:
    session = SmtpSession("127.0.0.1", port, 5.0, "relay.test")
    try:
        await worker._relay(session, rows, claimed, worker._unreachable.step)
    finally:
        await session.close()
        await worker.stop()


async def test_a_nearly_spent_lease_is_renewed_before_the_submit_starts(
    pool: asyncpg.Pool, postfix: tuple[Postfix, int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    short_lease(monkeypatch, LEASE, SUBMIT)
    server, port = postfix
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1))
    rows, claimed = await nearly_spent(pool, worker, server)
    await relay(worker, port, rows, claimed)
    (left,) = server.lease_left
    assert left >= SUBMIT  # it lasts the whole submit, were no renewal to succeed
    assert await pool.fetchval("SELECT status FROM outbound_messages WHERE id = $1",
                               server.message) == "relayed"


async def test_a_row_claimed_again_while_its_lease_ran_low_is_not_sent(
    pool: asyncpg.Pool, postfix: tuple[Postfix, int], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    short_lease(monkeypatch, LEASE, SUBMIT)
    server, port = postfix
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1))
    rows, claimed = await nearly_spent(pool, worker, server)
    # Another worker's claim (one more attempt), its submit under way.
    await pool.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = "
                       "now() + interval '1 hour' WHERE message_id = $1", server.message)
    before = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", server.message)
    await relay(worker, port, rows, claimed)
    assert server.lease_left == []  # nothing sent
    assert await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1",
                               server.message) == before
    assert f"message {server.message} was claimed again" in caplog.text
