"""A service killed (SIGKILL) while its relay holds claimed rows, between Postfix's 250
for one of them and storing it: real processes, real Postfix (with the milter)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.outbox import enqueue
from tests.fixtures.adminapp import TEST_SECRET_KEY
from tests.fixtures.ports import free_port
from tests.fixtures.submissions import ROOMY, submission

from .test_e2e import MAILLOG_HOST, Mail, eventually, running_mail, with_message_id

pytestmark = pytest.mark.postfix

# The relay's store of Postfix's 250 (relayoutcomes.RELAYED), waiting on the test's lock.
STORING = """
SELECT array_agg(pid) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM outbox%'
"""
KILLED = "relay-killed"  # the application_name of the service killed
# Every backend of the service killed: the store seen waiting, and any statement sent
# after it (its maillog follower's, settling the same message), which would run once
# the lock is gone, as the kill meant to come first.
END_KILLED = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1
"""


@pytest.fixture(scope="module")
def mail(database_url: str) -> Iterator[Mail]:
    with running_mail(database_url) as mail:
        yield mail


@contextmanager
def service(database_url: str, mail: Mail, log: Path, attempts: int, name: str = "relay"
            ) -> Iterator[subprocess.Popen[bytes]]:
    """``postwarden-admin serve`` relaying to ``mail``'s listener, one relay task,
    ``attempts`` at most for a message; ``name``: its connections' application_name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {"POSTWARDEN_DATABASE_URL": f"{database_url}?application_name={name}",
            "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}",
            "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY, "POSTWARDEN_RELAY_HOST": "127.0.0.1",
            "POSTWARDEN_RELAY_PORT": str(mail.submission_port),
            "POSTWARDEN_RELAY_WORKERS": "1", "POSTWARDEN_RELAY_MAX_ATTEMPTS": str(attempts),
            "POSTWARDEN_RELAY_BACKOFF_SECONDS": "0.2",
            "POSTWARDEN_MAILLOG_PATH": str(mail.postfix.maillog),
            "POSTWARDEN_MAILLOG_HOST": MAILLOG_HOST}
    with log.open("a") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "postwarden_admin_api", "serve"],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _killed_mid_batch(database_url: str, pool: asyncpg.Pool, mail: Mail, log: Path,
                            attempts: int) -> tuple[list[uuid.UUID], dict[uuid.UUID, str]]:
    """Two messages claimed in one batch by a service killed once Postfix queued the first
    and before that was stored (its write held back by a lock, then its backend ended,
    as if the kill came first); the second was never submitted. Their ids, and each
    one's Message-ID."""
    tag = uuid.uuid4().hex[:10]
    async with pool.acquire() as conn, conn.transaction():
        ids = [(await enqueue(conn, submission(tag, f"{name}-{tag}@example.org"), ROOMY)).id
               for name in ("queued", "waiting")]
        await conn.execute("UPDATE outbox SET next_attempt_at = now() + interval '1 hour' "
                           "WHERE message_id = ANY($1::uuid[])", ids)
    message_ids = {r["id"]: r["message_id"] for r in await pool.fetch(
        "SELECT id, message_id FROM outbound_messages WHERE id = ANY($1::uuid[])", ids)}
    blocker = await asyncpg.connect(database_url)
    held = blocker.transaction()
    await held.start()
    await blocker.execute("SELECT FROM outbound_messages WHERE id = $1 FOR UPDATE", ids[0])
    for offset, message in enumerate(ids):  # due, the first first
        await pool.execute("UPDATE outbox SET next_attempt_at = now() - $2::int * interval "
                           "'1 second' WHERE message_id = $1", message, 2 - offset)
    try:
        with service(database_url, mail, log, attempts, KILLED) as first:
            await eventually(lambda: pool.fetchval(STORING), within=60)
            assert with_message_id(mail, message_ids[ids[0]])
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait)
            # Its backends would run their writes once the lock is gone: ended first.
            await pool.execute(END_KILLED, KILLED)
    finally:
        await held.rollback()
        await blocker.close()
    return ids, message_ids


async def _each_sent_once(database_url: str, pool: asyncpg.Pool, mail: Mail, log: Path,
                          killed: tuple[list[uuid.UUID], dict[uuid.UUID, str]], *,
                          attempts: int, within: float) -> None:
    """A service started now settles both within ``within`` seconds: the first found in
    Postfix's log (not sent again), the second sent; each reaches the mailbox once."""
    ids, message_ids = killed
    with service(database_url, mail, log, attempts):
        done = [await eventually(lambda m=m: pool.fetchrow(
            "SELECT * FROM outbound_messages WHERE id = $1 AND status <> 'queued'", m),
            within=within) for m in ids]
    found = await pool.fetch("SELECT message_id FROM outbound_events WHERE event = "
                             "'found_in_log' AND message_id = ANY($1::uuid[])", ids)
    assert [r["message_id"] for r in found] == [ids[0]], \
        (await asyncio.to_thread(log.read_text))[-3000:]
    assert done[1]["queue_id"] not in (None, done[0]["queue_id"])
    await asyncio.sleep(2.0)
    assert [len(with_message_id(mail, message_ids[m])) for m in ids] == [1, 1]


@pytest.mark.parametrize("attempts", [8, 1])
async def test_a_service_killed_after_postfix_queued_a_message_sends_each_once(
    database_url: str, pool: asyncpg.Pool, mail: Mail, tmp_path: Path, attempts: int
) -> None:
    """Both messages stay claimed until their lease ends; then another process finds the
    first in Postfix's log (not sent again) and sends the second: each reaches the
    mailbox once, also when that was its last attempt."""
    log = tmp_path / "service.log"
    killed = ids, _ = await _killed_mid_batch(database_url, pool, mail, log, attempts)
    left = {r["message_id"]: (r["unsettled"], r["leased"]) for r in await pool.fetch(
        "SELECT message_id, unsettled, next_attempt_at > now() AS leased FROM outbox "
        "WHERE message_id = ANY($1::uuid[])", ids)}
    # Both wait for their lease; the second, at its last attempt, was never sent, so
    # it does not count as cut off (it was failed, never sent).
    assert [left[m] for m in ids] == [(True, True), (attempts > 1, True)]
    # Their lease ended, and their claimer is not known to be gone (another host's):
    await pool.execute("UPDATE outbox SET next_attempt_at = now(), claimed_by = NULL "
                       "WHERE message_id = ANY($1::uuid[])", ids)
    await _each_sent_once(database_url, pool, mail, log, killed, attempts=attempts, within=60)


@pytest.mark.parametrize("attempts", [8, 1])
async def test_a_service_restarted_after_a_kill_takes_its_dead_claims_back_at_once(
    database_url: str, pool: asyncpg.Pool, mail: Mail, tmp_path: Path, attempts: int
) -> None:
    """The service restarted on the same host knows the killed one is gone: it sends
    the rows that one claimed (each once) without waiting for their 15-minute lease."""
    log = tmp_path / "service.log"
    killed = ids, _ = await _killed_mid_batch(database_url, pool, mail, log, attempts)
    assert await pool.fetchval("SELECT bool_and(next_attempt_at > now() + interval "
                               "'10 minutes') FROM outbox WHERE message_id = ANY($1::uuid[])",
                               ids)
    await _each_sent_once(database_url, pool, mail, log, killed, attempts=attempts, within=90)
