"""A relay's claims are dead once no session holds its claim token: seen from another PID
namespace (a restarted container) or host, where /proc cannot tell, at once; never while
its process lives, nor for a row it may still be submitting, a database restart
included. Real PostgreSQL, real processes (the claimant in a PID namespace of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from postwarden_admin_api.send import relay
from postwarden_admin_api.send.claimtoken import LOCK_CLASS
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from postwarden_store import create_pool, migrate_database
from tests.fixtures.postgres import PostgresCluster, running_cluster
from tests.fixtures.scripted_smtp import Scripted

from .test_e2e import eventually
from .test_relay import accepted, settled

pytestmark = pytest.mark.postgres

# A service's relay (one task) run by hand: argv[1] the database, argv[2] Postfix's port;
# argv[3:5], if given, how long its marks as being submitted last, and their margin.
CLAIMANT = """
import asyncio, sys
from postwarden_store import create_pool
from postwarden_admin_api.send import relay
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig

async def main():
    if len(sys.argv) > 3:
        relay.SENDING_SECONDS, relay.SENDING_MARGIN_SECONDS = map(float, sys.argv[3:5])
    pool = await create_pool(sys.argv[1])
    RelayWorker(pool, RelayConfig("127.0.0.1", int(sys.argv[2]), 3, 0.05, workers=1)).start()
    await asyncio.Event().wait()

asyncio.run(main())
"""
# A PID namespace of its own, /proc its own; killed with unshare, its parent.
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
CLAIMS = "SELECT message_id, claimed_by, next_attempt_at > now() AS leased FROM outbox"
# The claimant's token's backend gone: the last statement of that connection marked the
# row it submits.
NONE_MARKED = """
SELECT count(*) = 0 FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND query LIKE '%UPDATE outbox SET sending_until%'
"""
MARKED = "SELECT sending_until FROM outbox WHERE message_id = $1"
# End the sessions holding a claim token's lock, but this one.
END_TOKEN_HOLDERS = """
SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND objsubid = 2 AND granted
  AND pid <> pg_backend_pid()
"""
DEFERRED = """
SELECT o.attempts, o.unsettled, o.sending_until, m.last_error, e.time < o.sending_until
       AS stored_within_mark
FROM outbox o JOIN outbound_messages m ON m.id = o.message_id
JOIN outbound_events e ON e.message_id = o.message_id AND e.event = 'relay_deferred'
WHERE o.message_id = $1
"""


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


def _config(port: int) -> RelayConfig:
    return RelayConfig("127.0.0.1", port, 3, 0.05, workers=1)


@pytest.fixture
def claimant_namespace() -> list[str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a PID namespace of its own needs root and unshare(1)")
    return UNSHARE


async def _claims(pool: asyncpg.Pool) -> dict[uuid.UUID, tuple[str | None, bool]]:
    """Each row's claimant, and whether it is leased."""
    return {r["message_id"]: (r["claimed_by"], r["leased"]) for r in await pool.fetch(CLAIMS)}


async def _submitting(handler: Scripted, messages: dict[str, uuid.UUID]
                      ) -> tuple[uuid.UUID, uuid.UUID]:
    """Once a claim of both ``messages`` (by recipient) submits one, waiting for Postfix's
    answer: that one, and the other."""
    await eventually(lambda: bool(handler.received))
    [(_, (recipient,), _)] = handler.received
    [other] = set(messages.values()) - {messages[recipient]}
    return messages[recipient], other


async def _accepted(pool: asyncpg.Pool, prefix: str) -> dict[str, uuid.UUID]:
    addresses = [f"{prefix}{n}@example.org" for n in range(2)]
    return {address: await accepted(pool, address) for address in addresses}


@contextlib.asynccontextmanager
async def killed_claimant(pool: asyncpg.Pool, handler: Scripted, namespace: list[str],
                          database_url: str, port: int, *marks: str
                          ) -> AsyncIterator[tuple[asyncio.subprocess.Process, RelayWorker]]:
    """A claimant run in ``namespace`` (``marks``: CLAIMANT's argv[3:5]), to be killed
    (:func:`kill`) mid-submit, and another instance's relay; at the end the claimant is
    killed if it still lives, Postfix's DATA let through and the other relay stopped."""
    handler.data_gate.clear()  # its submits wait for Postfix's answer to DATA
    claimant = await asyncio.create_subprocess_exec(
        *namespace, sys.executable, "-c", CLAIMANT, database_url, str(port), *marks)
    other = RelayWorker(pool, _config(port))
    try:
        yield claimant, other
    finally:
        if claimant.returncode is None:
            claimant.kill()
            await claimant.wait()
        handler.data_gate.set()
        await other.stop()


async def kill(pool: asyncpg.Pool, claimant: asyncio.subprocess.Process) -> None:
    """Kill ``claimant``; return once the session of its claim token is gone."""
    claimant.send_signal(signal.SIGKILL)
    await claimant.wait()
    await eventually(lambda: pool.fetchval(NONE_MARKED))


async def test_a_claimant_killed_in_another_pid_namespace_is_seen_dead_at_once(
    pool: asyncpg.Pool, database_url: str, smtp_server: tuple[Scripted, int],
    claimant_namespace: list[str],
) -> None:
    """Its two rows, one being submitted, stay its own while it lives; once it is killed,
    the other is due at once, though /proc cannot tell it gone; the one it may have been
    submitting when killed, once its mark as being submitted has ended."""
    handler, port = smtp_server
    messages = await _accepted(pool, "ns")
    # ``other``: another instance, of another namespace.
    async with killed_claimant(pool, handler, claimant_namespace, database_url, port) as (
            claimant, other):
        sending, waiting = await _submitting(handler, messages)
        claimed = await _claims(pool)
        name = claimed[sending][0]
        assert name is not None
        assert claimed == {sending: (name, True), waiting: (name, True)}
        await other._reclaim_gone()
        assert await _claims(pool) == claimed  # alive: none of its rows is taken

        await kill(pool, claimant)
        assert other._claimants.gone([name]) == []  # /proc cannot tell
        await other._reclaim_gone()
        # The submit it was killed in may have reached Postfix: its row waits for its
        # mark as being submitted to end (the next claim then asks Postfix's log), a
        # while no longer than one renewal's, not the submit's whole bound; the other is
        # due.
        assert await _claims(pool) == {sending: (name, True), waiting: (None, False)}
        assert await pool.fetchval("SELECT sending_until <= now() + $2::interval FROM outbox "
                                   "WHERE message_id = $1", sending,
                                   dt.timedelta(seconds=relay.SENDING_SECONDS))
        await pool.execute("UPDATE outbox SET sending_until = now()")  # that bound passed
        await other._reclaim_gone()
        assert await pool.fetchval("SELECT bool_and(next_attempt_at <= now() AND "
                                   "claimed_by IS NULL) FROM outbox")


async def test_a_killed_claimant_s_row_is_reclaimed_once_its_short_mark_ends(
    pool: asyncpg.Pool, database_url: str, smtp_server: tuple[Scripted, int],
    claimant_namespace: list[str],
) -> None:
    """Killed mid-submit in another PID namespace, a claimant whose marks last 3 s: its
    row is due to another instance once its mark ends, not the submit's whole bound."""
    handler, port = smtp_server
    message = await accepted(pool, "killed@example.org")
    async with killed_claimant(pool, handler, claimant_namespace, database_url, port,
                               "3", "1") as (claimant, other):
        await eventually(lambda: bool(handler.received))
        await kill(pool, claimant)

        async def reclaimed() -> bool:
            await other._reclaim_gone()
            return (await _claims(pool))[message] == (None, False)

        await eventually(reclaimed)


def short_mark(monkeypatch: pytest.MonkeyPatch, seconds: float, margin: float) -> None:
    monkeypatch.setattr(relay, "SENDING_SECONDS", seconds)
    monkeypatch.setattr(relay, "SENDING_MARGIN_SECONDS", margin)


async def test_a_stalled_submit_keeps_its_mark_renewed(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Postfix holds the end of DATA far past the mark's 1.5 s: the mark is renewed, again
    and again, on the claim token's connection; the submit goes on, and is sent once."""
    short_mark(monkeypatch, 1.5, 0.5)
    handler, port = smtp_server
    handler.data_gate.clear()
    message = await accepted(pool, "stalled@example.org")
    worker = RelayWorker(pool, _config(port))
    worker.start()
    try:
        await eventually(lambda: bool(handler.received))
        marks = [await pool.fetchval(MARKED, message)]
        for _ in range(3):
            marks.append(await eventually(lambda: pool.fetchval(
                "SELECT sending_until FROM outbox WHERE message_id = $1 "
                "AND sending_until > $2", message, marks[-1])))
        handler.data_gate.set()
        row = await settled(pool, message)
    finally:
        handler.data_gate.set()
        await worker.stop()
    assert (row["status"], row["attempts"]) == ("relayed", 1)
    assert len(handler.received) == 1


async def _take_over(holder: asyncpg.Connection, name: str) -> bool:
    """End the session holding claim token ``name``'s lock, and take the lock on
    ``holder`` (as another instance reclaiming does), if no session took it again."""
    await holder.execute(END_TOKEN_HOLDERS, LOCK_CLASS)
    taken: bool = await holder.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))",
                                        LOCK_CLASS, name)
    return taken


async def test_a_submit_whose_claim_token_is_lost_is_cut_off_before_its_mark_ends(
    pool: asyncpg.Pool, database_url: str, smtp_server: tuple[Scripted, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim token's connection ends mid-submit and another session takes its lock:
    the mark cannot be renewed, so the submit is cut off, its outcome (uncertain:
    Postfix's log decides) stored before the mark ended; no other claim could have
    taken the row while it was being submitted, and it was sent once."""
    short_mark(monkeypatch, 4.0, 2.0)
    handler, port = smtp_server
    handler.data_gate.clear()
    message = await accepted(pool, "lost@example.org")
    worker = RelayWorker(pool, _config(port))
    holder = await asyncpg.connect(database_url)
    worker.start()
    try:
        await eventually(lambda: bool(handler.received))
        name = (await _claims(pool))[message][0]
        assert name is not None
        await eventually(lambda: _take_over(holder, name))
        marked = await pool.fetchval(MARKED, message)
        deferred = await eventually(lambda: pool.fetchrow(DEFERRED, message))
    finally:
        handler.data_gate.set()
        await worker.stop()
        await holder.close()
    assert dict(deferred) == {
        "attempts": 1, "unsettled": True, "sending_until": marked,  # not renewed since
        "last_error": "no answer before the claim could no longer be proven",
        "stored_within_mark": True}
    assert len(handler.received) == 1


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    with running_cluster() as cluster:
        asyncio.run(migrate_database(cluster.admin_dsn))
        yield cluster


async def test_a_database_restart_mid_submit_takes_the_rows_not_sent_but_none_twice(
    own_cluster: PostgresCluster, smtp_server: tuple[Scripted, int],
) -> None:
    """The restart ends every session, the claimant's token's with it, while the claimant
    lives and submits one of its rows: another instance takes and sends the row not being
    submitted; the claimant stores the one it submitted, sends the other not again, and
    holds its token again."""
    handler, port = smtp_server
    handler.data_gate.clear()
    pool = await create_pool(own_cluster.admin_dsn, max_size=4)
    first = RelayWorker(pool, _config(port))
    second = RelayWorker(pool, _config(port))
    try:
        messages = await _accepted(pool, "restart")
        first.start()
        sending, waiting = await _submitting(handler, messages)
        name = (await _claims(pool))[sending][0]
        await asyncio.to_thread(own_cluster.stop)
        await asyncio.to_thread(own_cluster.start)

        second.start()  # its first reclaim, then its claim of the row due
        await eventually(lambda: len(handler.received) == 2)
        assert await pool.fetchval("SELECT claimed_by FROM outbox WHERE message_id = $1",
                                   sending) == name
        handler.data_gate.set()
        for message in (sending, waiting):
            assert (await settled(pool, message))["status"] == "relayed"
        # The first claims again: its token held again, on a session of its own.
        await eventually(lambda: pool.fetchval("SELECT count(*) = 2 FROM pg_locks WHERE "
                                               "locktype = 'advisory' AND objsubid = 2"))
    finally:
        handler.data_gate.set()
        await first.stop()
        await second.stop()
        await pool.close()
    # Each sent once: the one being submitted at the restart not again.
    assert sorted(rcpt for _, (rcpt,), _ in handler.received) == sorted(messages)
