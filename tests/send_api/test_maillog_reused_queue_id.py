"""Postfix reuses short queue ids (``enable_long_queue_ids = no``): once qmgr removed a
message of ours, its queue id may name other mail, whose arrival the reader did not
see (it read those lines before a restart, or another instance did). Its lines were
applied to our message, the one relayed last under the id: a recipient delivered long
ago turned bounced, and was suppressed. The lines here are as Postfix 3.8 writes them.
"""

from __future__ import annotations

import asyncio
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


async def test_a_line_under_a_queue_id_postfix_removed_for_our_message_is_not_about_it(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("R")
    address = f"reused-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, queue_id, address)
    append(log_file, sent(queue_id, address), removed(queue_id))
    await follower.poll()
    await follower.release()  # a restart: the next reader knows no other mail yet
    append(log_file, line(queue_id, address, "bounced", "5.1.1",
                          "host mx.example.org[192.0.2.7] said: 550 5.1.1 <" + address
                          + ">: Recipient address rejected: User unknown (in reply to "
                          "RCPT TO command)"),
           removed(queue_id))
    await MaillogFollower(pool, log_file).poll()
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}
    assert await message_status(pool, ours) == "delivered"
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               address) == 0


async def test_a_line_under_a_queue_id_deleted_by_an_administrator_is_not_about_it(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """postsuper -d: the id is free for other mail as after qmgr's removal."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("D")
    ours = await relayed_message(pool, queue_id, "held@example.org")
    append(log_file, removed(queue_id, "postsuper"))
    await follower.poll()
    assert await recipients(pool, ours) == {"held@example.org": (
        "failed", "deleted from Postfix's queue before it was delivered here")}
    await follower.release()
    append(log_file, sent(queue_id, "held@example.org"))
    await MaillogFollower(pool, log_file).poll()
    assert await message_status(pool, ours) == "failed"


async def test_our_next_message_under_a_reused_queue_id_gets_its_lines(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("N")
    first = await relayed_message(pool, queue_id, "a@example.org")
    append(log_file, sent(queue_id, "a@example.org"), removed(queue_id))
    await follower.poll()
    second = await relayed_message(pool, queue_id, "a@example.org")
    append(log_file, line(queue_id, "a@example.org", "deferred", "4.2.0", "451 later"))
    await follower.poll()
    assert await recipients(pool, second) == {"a@example.org": ("deferred", "451 later")}
    assert await recipients(pool, first) == {"a@example.org": ("delivered", "250 ok")}


async def test_a_line_read_before_a_message_of_ours_took_the_queue_id_is_not_about_it(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Other mail's line waits (its queue id not known yet), Postfix removes that mail
    and gives the id to ours: the line was kept for ours, then applied to it once the
    relay stored the id. A message's lines all come after its first line (smtpd's
    ``client=``), so those read before it are another's."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("W")
    address = f"waiting-{uuid.uuid4().hex[:6]}@example.org"
    append(log_file, line(queue_id, address, "bounced", "5.1.1",
                          "host mx.example.org[192.0.2.7] said: 550 5.1.1 User unknown "
                          "(in reply to RCPT TO command)"),
           removed(queue_id))
    await follower.poll()  # other mail's, seen arriving by no reader: it waits
    ours = await accepted_message(pool, address)
    append(log_file,
           about_message(queue_id, "smtpd", "client=localhost[127.0.0.1]"),
           about_message(queue_id, "cleanup", f"message-id=<{ours.hex}@example.com>"),
           about_message(queue_id, "qmgr", "from=<app@example.com>, size=640, nrcpt=1 "
                                           "(queue active)"))
    await follower.poll()
    await relay_as(pool, ours, queue_id)
    await follower.poll()
    assert await recipients(pool, ours) == {address: ("relayed", None)}
    append(log_file, sent(queue_id, address))
    await follower.poll()
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               address) == 0


async def queued(postfix: PostfixInstance, message_id: str, address: str) -> str:
    """Postfix's queue id for a message to ``address``, once qmgr removed it."""
    data = (f"From: app@example.com\r\nTo: {address}\r\nSubject: hi\r\n"
            f"Message-ID: <{message_id}>\r\n\r\nbody\r\n").encode()
    result = await asyncio.to_thread(send_message, postfix.port, data, "app@example.com",
                                     [address])
    assert result.accepted and result.queue_id, result
    await asyncio.to_thread(postfix.wait_for_log, rf"{result.queue_id}: removed", 30)
    return result.queue_id


def lines_of(postfix: PostfixInstance, queue_id: str, *, arrival: bool = True) -> str:
    """Postfix's lines naming ``queue_id``, without its first ones (``arrival``
    False: read by a reader before a restart)."""
    first = ("smtpd", "cleanup")
    return "".join(text + "\n" for text in postfix.log().splitlines()
                   if f" {queue_id}: " in text
                   and (arrival or not any(f"/{daemon}[" in text for daemon in first)))


@pytest.mark.postfix
async def test_real_postfix_lines_of_other_mail_under_our_removed_queue_id(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Postfix's own lines, short queue ids: other mail bounced at the same address
    under our message's queue id (Postfix cannot be made to reuse one on cue: its id
    is put in place of the other mail's)."""
    address = f"real-{uuid.uuid4().hex[:6]}@example.net"
    log_file, follower = await follower_at_end(pool, tmp_path)
    with running_postfix(main={"enable_long_queue_ids": "no"}) as (postfix, capture):
        ours = await accepted_message(pool, address)
        queue_id = await queued(postfix, f"{ours.hex}@example.com", address)
        await relay_as(pool, ours, queue_id)
        append(log_file, lines_of(postfix, queue_id))
        await follower.poll()
        assert await message_status(pool, ours) == "delivered"
        await follower.release()
        capture.reply_for(address, "550 5.1.1 <" + address + ">: no such user")
        theirs = await queued(postfix, "1.2@mua.example", address)
        append(log_file, lines_of(postfix, theirs, arrival=False).replace(theirs, queue_id))
    assert f"{queue_id}: to=<{address}>, relay=" in log_file.read_text()
    assert "dsn=5.1.1, status=bounced" in log_file.read_text()
    await MaillogFollower(pool, log_file).poll()
    assert [status for status, _ in (await recipients(pool, ours)).values()] == ["delivered"]
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               address) == 0
