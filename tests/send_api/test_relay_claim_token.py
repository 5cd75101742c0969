"""A relay's claims are dead once no session holds its claim token: seen from another PID
namespace (a restarted container) or host, where /proc cannot tell, at once; never while
its process lives, nor for a row it may still be submitting, a database restart
included. Real PostgreSQL, real processes (the claimant in a PID namespace of its own)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from postwarden_store import create_pool, migrate_database
from tests.fixtures.postgres import PostgresCluster, running_cluster
from tests.fixtures.scripted_smtp import Scripted

from .test_e2e import eventually
from .test_relay import accepted, settled

pytestmark = pytest.mark.postgres

# A service's relay (one task) run by hand: argv[1] the database, argv[2] Postfix's port.
CLAIMANT = """
import asyncio, sys
from postwarden_store import create_pool
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig

async def main():
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


async def test_a_claimant_killed_in_another_pid_namespace_is_seen_dead_at_once(
    pool: asyncpg.Pool, database_url: str, smtp_server: tuple[Scripted, int],
    claimant_namespace: list[str],
) -> None:
    """Its two rows, one being submitted, stay its own while it lives; once it is killed,
    the other is due at once, though /proc cannot tell it gone; the one it may have been
    submitting when killed, once that submit's bound has passed."""
    handler, port = smtp_server
    handler.data_gate.clear()
    messages = await _accepted(pool, "ns")
    claimant = await asyncio.create_subprocess_exec(
        *claimant_namespace, sys.executable, "-c", CLAIMANT, database_url, str(port))
    other = RelayWorker(pool, _config(port))  # another instance, of another namespace
    try:
        sending, waiting = await _submitting(handler, messages)
        claimed = await _claims(pool)
        name = claimed[sending][0]
        assert name is not None
        assert claimed == {sending: (name, True), waiting: (name, True)}
        await other._reclaim_gone()
        assert await _claims(pool) == claimed  # alive: none of its rows is taken

        claimant.send_signal(signal.SIGKILL)
        await claimant.wait()
        await eventually(lambda: pool.fetchval(NONE_MARKED))
        assert other._claimants.gone([name]) == []  # /proc cannot tell
        await other._reclaim_gone()
        # The submit it was killed in may have reached Postfix: its row waits for the
        # submit's bound (the next claim then asks Postfix's log); the other is due.
        assert await _claims(pool) == {sending: (name, True), waiting: (None, False)}
        await pool.execute("UPDATE outbox SET sending_until = now()")  # that bound passed
        await other._reclaim_gone()
        assert await pool.fetchval("SELECT bool_and(next_attempt_at <= now() AND "
                                   "claimed_by IS NULL) FROM outbox")
    finally:
        if claimant.returncode is None:
            claimant.kill()
            await claimant.wait()
        handler.data_gate.set()
        await other.stop()


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
