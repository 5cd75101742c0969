"""An interrupted attempt whose file waits for a qmgr more than OPEN_RECEIPT_LIMIT behind.

cleanup logs our Message-ID, finishes the queue file in the incoming queue and
answers 250; qmgr logs ``queue active`` only once it takes the file in. A transfer
cut off mid-DATA whose smtpd logs nothing of it (killed) leaves the same lines (its
file is removed without one), so past OPEN_RECEIPT_LIMIT the relay took the message
for not queued and sent a second copy. Postfix's queue tells the two apart:
``postqueue -j`` lists only finished files. Runs against a private real Postfix whose
qmgr is paused (SIGSTOP).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send.interrupted import PostfixQueue
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.receipts import OPEN_RECEIPT_LIMIT
from tests.fixtures.postfix import PostfixInstance, running_postfix, wait_for

from .test_receipts import until
from .test_relay import database_url  # noqa: F401 - a fixture
from .test_review_held_receipt import hang_up_after_the_dot
from .test_review_log_lag import cut_off, relayed

pytestmark = pytest.mark.postfix
HOST = "pf-qmgr-behind"


def qmgr_pid(postfix: PostfixInstance) -> int | None:
    """The pid of the instance's qmgr (a child of its master)."""
    master = postfix.master_pid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(") ")
        if name.endswith("(qmgr") and int(rest.split()[1]) == master:
            return int(entry.name)
    return None


@pytest.fixture
def postfix() -> Iterator[PostfixInstance]:
    """A private Postfix whose qmgr is paused: finished files stay in the incoming queue."""
    with running_postfix() as (instance, _):
        pid: int = wait_for(lambda: qmgr_pid(instance))  # it starts with the master
        os.kill(pid, signal.SIGSTOP)
        try:
            yield instance
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
async def follower(pool: asyncpg.Pool, postfix: PostfixInstance
                   ) -> AsyncIterator[MaillogFollower]:
    follower = MaillogFollower(pool, postfix.maillog, host=HOST)
    task = asyncio.create_task(follower.run())
    yield follower
    await stop_task(task)


def killed_mid_data(postfix: PostfixInstance, sender: str, recipient: str, content: bytes
                    ) -> None:
    """A transfer whose smtpd is killed mid-DATA, once cleanup named its Message-ID:
    Postfix removes the file, and logs no line that says so."""
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail(sender)
        smtp.rcpt(recipient)
        assert smtp.docmd("DATA")[0] == 354
        # More than smtpd holds back from cleanup: the headers reach it.
        smtp.send(content[:-2] + b"\r\n" + (b"x" * 78 + b"\r\n") * 300)
        wait_for(lambda: "message-id=" in postfix.log())
        os.kill(int(re.findall(r"smtpd\[(\d+)\]: \w+: client=", postfix.log())[-1]),
                signal.SIGKILL)
        smtp.close()


async def interrupted(pool: asyncpg.Pool, postfix: PostfixInstance, *, finished: bool
                      ) -> tuple[uuid.UUID, str]:
    """A row whose attempt was cut off after the whole message (``finished``) or in its
    middle, the receipt older than OPEN_RECEIPT_LIMIT; and the receipt's queue id."""
    recipient = f"behind-{uuid.uuid4().hex[:8]}@example.org"
    message = await cut_off(pool, recipient)
    row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message)
    await until(pool, "SELECT EXISTS (SELECT FROM maillog_positions WHERE path LIKE $1)",
                f"{HOST}:%")
    if finished:  # the answer was lost: Postfix finished the file, qmgr is paused
        await hang_up_after_the_dot(postfix.port, row["envelope_from"], recipient,
                                    row["content"])
    else:
        await asyncio.to_thread(killed_mid_data, postfix, row["envelope_from"], recipient,
                                row["content"])
    await until(pool, "SELECT EXISTS (SELECT FROM relay_receipts WHERE message_id = $1 "
                "AND NOT committed)", message)
    queue_id = await pool.fetchval("SELECT queue_id FROM relay_receipts WHERE message_id = $1",
                                   message)
    if finished:
        await until_listed(postfix, [("incoming", queue_id)])
    # As if qmgr had been behind for longer than an open receipt holds the row back.
    await pool.execute("UPDATE relay_receipts SET seen_at = now() - $2::interval "
                       "- interval '1 minute' WHERE message_id = $1", message,
                       OPEN_RECEIPT_LIMIT)
    return message, queue_id


async def until_listed(postfix: PostfixInstance, expected: list[tuple[str, str]]) -> None:
    """Until ``postqueue -j`` lists ``expected`` (queue, queue id), for 15 s at most."""
    for _ in range(300):
        listed = [(e["queue_name"], e["queue_id"]) for e in
                  await asyncio.to_thread(postfix.queue)]
        if listed == expected:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"postqueue lists {listed}, not {expected}")


async def test_a_file_qmgr_has_not_taken_in_for_long_is_not_sent_again(
    pool: asyncpg.Pool, postfix: PostfixInstance, follower: MaillogFollower,
) -> None:
    message, queue_id = await interrupted(pool, postfix, finished=True)
    stored = await relayed(pool, postfix.port, follower, message,
                           queue=PostfixQueue(postfix.config_dir))
    assert (stored["status"], stored["queue_id"]) == ("relayed", queue_id)
    assert len(await asyncio.to_thread(postfix.queue)) == 1  # no second copy


async def test_a_transfer_killed_mid_data_is_sent_again_past_the_limit(
    pool: asyncpg.Pool, postfix: PostfixInstance, follower: MaillogFollower,
) -> None:
    message, aborted = await interrupted(pool, postfix, finished=False)
    stored = await relayed(pool, postfix.port, follower, message,
                           queue=PostfixQueue(postfix.config_dir))
    assert stored["status"] == "relayed" and stored["queue_id"] != aborted
    await until_listed(postfix, [("incoming", stored["queue_id"])])  # the one copy
