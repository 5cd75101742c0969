"""qmgr's ``QID: removed`` ends a message's queue id (migration 0050): any local user
can log one (``logger -p mail.info -t postfix/qmgr``), and a forged one, read before
Postfix was done with our recipients, stopped their tracking for good. Postfix removes a
queue file once every recipient in it is done: a ``removed`` read while a recipient of
ours still waits for a result holds the id for a day after the last line about the
message (Postfix retries a deferred recipient far more often), instead of ending it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.maillog import MaillogFollower
from tests.fixtures.postfix import PostfixInstance, running_postfix, send_message

from .test_maillog import (
    about_message,
    accepted_message,
    append,
    follower_at_end,
    line,
    message_status,
    new_queue_id,
    recipients,
    relay_as,
    relayed_message,
    removed,
    sent,
)


def at(moment: dt.datetime, text: str) -> str:
    """``text``, a line of test_maillog's, stamped ``moment``."""
    return moment.isoformat() + text.removeprefix("Nov 23 15:12:49")


async def test_a_forged_removed_line_does_not_stop_the_tracking_of_our_message(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("F")
    address = f"forged-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, queue_id, address)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)  # lines in the past
    append(log_file, at(now, line(queue_id, address, "deferred", "4.4.1", "connect timeout")),
           at(now, removed(queue_id)),  # forged: the recipient is still deferred
           at(now + dt.timedelta(hours=3), sent(queue_id, address)),
           at(now + dt.timedelta(hours=3), removed(queue_id)))
    await follower.poll()
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}
    assert await message_status(pool, ours) == "delivered"


async def test_a_queue_id_removed_with_a_recipient_left_waiting_ends_a_day_later(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Its lines lost (a log rotated away), the recipient never gets a result: other
    mail given the id after that day brings none of its lines."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("G")
    address = f"grace-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, queue_id, address)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)  # lines in the past
    append(log_file, at(now, removed(queue_id)),
           at(now + dt.timedelta(hours=25),
              line(queue_id, address, "bounced", "5.1.1", "550 5.1.1 no such user")))
    await follower.poll()
    assert await recipients(pool, ours) == {address: ("relayed", None)}
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               address) == 0


async def test_a_removed_line_after_every_result_ends_the_queue_id_at_once(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("E")
    address = f"ended-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, queue_id, address)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)  # lines in the past
    append(log_file, at(now, sent(queue_id, address)), at(now, removed(queue_id)),
           at(now + dt.timedelta(minutes=1),
              line(queue_id, address, "bounced", "5.1.1", "550 5.1.1 no such user")))
    await follower.poll()
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}


@pytest.mark.postfix
async def test_real_postfix_a_removed_line_forged_through_postlog(pool: asyncpg.Pool) -> None:
    """Postfix's own ``maillog_file``, the line forged as any user who can run its
    ``postlog`` can: our recipient deferred, then delivered at the next try."""
    address = f"postlog-{uuid.uuid4().hex[:6]}@example.net"
    with running_postfix() as (postfix, capture):
        follower = MaillogFollower(pool, postfix.maillog)
        await follower.poll()  # starts at the log's end
        ours = await accepted_message(pool, address)
        capture.reply_for(address, "451 4.3.0 try again later")
        queue_id = await asyncio.to_thread(submitted, postfix, ours, address)
        await relay_as(pool, ours, queue_id)
        await asyncio.to_thread(postfix.wait_for_log, rf"{queue_id}: to=<{address}>.*"
                                                      r"status=deferred", 30)
        await asyncio.to_thread(subprocess.run, ["postlog", "-c", str(postfix.config_dir),
                                                 "-t", "postfix/qmgr", f"{queue_id}: removed"],
                                check=True, timeout=30)
        await asyncio.to_thread(postfix.wait_for_log, rf"qmgr\[\d+\]: {queue_id}: removed")
        await follower.poll()
        assert [s for s, _ in (await recipients(pool, ours)).values()] == ["deferred"]
        capture.accept(address)
        await asyncio.to_thread(postfix.flush)
        await asyncio.to_thread(postfix.wait_for_log, rf"{queue_id}: to=<{address}>.*"
                                                      r"status=sent", 30)
        await follower.poll()
    assert await message_status(pool, ours) == "delivered"


def submitted(postfix: PostfixInstance, message: uuid.UUID, address: str) -> str:
    data = (f"From: app@example.com\r\nTo: {address}\r\nSubject: hi\r\n"
            f"Message-ID: <{message.hex}@example.com>\r\n\r\nbody\r\n").encode()
    result = send_message(postfix.port, data, "app@example.com", [address])
    assert result.accepted and result.queue_id, result
    return result.queue_id


async def test_a_message_requeued_after_a_forged_removed_line_is_followed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """An administrator's ``postsuper -r`` moved it to a new queue id the follower then
    did not give it: its results were never read."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    old, new = new_queue_id("FR"), new_queue_id("FN")
    address = f"requeued-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, old, address)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    append(log_file, at(now, line(old, address, "deferred", "4.4.1", "connect timeout")),
           at(now, removed(old)),  # forged
           at(now, about_message(new, "pickup", f"uid=0 from=<app@example.com> orig_id={old}")))
    await follower.poll()
    append(log_file, at(now, sent(new, address)), at(now, removed(new)))
    await follower.poll()
    assert await message_status(pool, ours) == "delivered"
