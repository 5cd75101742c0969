"""Where qmgr's ``removed`` line of a message of ours was never read (the log rotated
away while no instance read it), Postfix may give its short queue id to other mail
(``enable_long_queue_ids = no``): every later line under the id was applied to our
message, however late. Postfix keeps no message queued past 100 days (the upper limit
of ``maximal_queue_lifetime``), so a line under a short id logged later than that after
the relay is another's; a long id is never reused.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.maillog import MaillogFollower
from tests.fixtures.postfix import running_postfix

from .test_maillog import (
    accepted_message,
    append,
    follower_at_end,
    message_status,
    recipients,
    relay_as,
)
from .test_maillog_reused_queue_id import lines_of, queued


async def relayed_days_ago(pool: asyncpg.Pool, message: uuid.UUID, days: int) -> None:
    await pool.execute("UPDATE outbound_events SET time = now() - make_interval(days => $2) "
                       "WHERE message_id = $1 AND event = 'relayed'", message, days)


@pytest.mark.postfix
async def test_real_postfix_lines_under_a_short_queue_id_past_any_queue_lifetime(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Our message delivered, its ``removed`` line lost; 120 days later other mail to
    the same address bounces under its queue id (put in place of the other mail's:
    Postfix cannot be made to reuse one on cue)."""
    address = f"window-{uuid.uuid4().hex[:6]}@example.net"
    log_file, follower = await follower_at_end(pool, tmp_path)
    with running_postfix(main={"enable_long_queue_ids": "no"}) as (postfix, capture):
        ours = await accepted_message(pool, address)
        queue_id = await queued(postfix, f"{ours.hex}@example.com", address)
        await relay_as(pool, ours, queue_id)
        append(log_file, *(text + "\n" for text in lines_of(postfix, queue_id).splitlines()
                           if f"{queue_id}: removed" not in text))
        await follower.poll()
        assert await message_status(pool, ours) == "delivered"
        await relayed_days_ago(pool, ours, 120)
        await follower.release()
        capture.reply_for(address, "550 5.1.1 <" + address + ">: no such user")
        theirs = await queued(postfix, "1.2@mua.example", address)
        append(log_file, lines_of(postfix, theirs, arrival=False).replace(theirs, queue_id))
    assert "dsn=5.1.1, status=bounced" in log_file.read_text()
    await MaillogFollower(pool, log_file).poll()
    assert [status for status, _ in (await recipients(pool, ours)).values()] == ["delivered"]
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               address) == 0


def bounced_now(queue_id: str, address: str) -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat()
    return (f"{stamp} mx postfix/smtp[7]: {queue_id}: to=<{address}>, relay=x, delay=0, "
            "delays=0/0/0/0, dsn=5.1.1, status=bounced (550 5.1.1 no such user)\n")


@pytest.mark.parametrize(("queue_id", "applied"), [
    # A long id: the second its file was made (base 52), "z", its inode.
    (f"4dQ9kL3Bq{uuid.uuid4().int % 10}z{uuid.uuid4().int % 10**6}", True),
    (f"A{uuid.uuid4().hex[:9].upper()}", False)], ids=["long", "short"])
async def test_only_a_short_queue_id_has_a_window(
    pool: asyncpg.Pool, tmp_path: Path, queue_id: str, applied: bool
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    address = f"late-{uuid.uuid4().hex[:6]}@example.org"
    ours = await accepted_message(pool, address)
    await relay_as(pool, ours, queue_id)
    await relayed_days_ago(pool, ours, 102)
    append(log_file, bounced_now(queue_id, address))
    await follower.poll()
    status = "bounced" if applied else "relayed"
    assert [s for s, _ in (await recipients(pool, ours)).values()] == [status]
