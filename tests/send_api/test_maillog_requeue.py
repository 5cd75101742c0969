"""A message an administrator requeues (``postsuper -r``) is queued again under a new
queue id, which only pickup's ``orig_id=`` ties to the old one. The follower applied
every later line of it to no message: the message stayed ``relayed`` for good, its
recipient ``deferred`` though Postfix bounced it, and the address was not suppressed.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.deliverylines import Requeued, parse_line
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.syslogline import split_line

from .test_maillog import (
    about_message,
    append,
    follower_at_end,
    line,
    message_status,
    new_queue_id,
    recipients,
    relayed_message,
    removed,
)


def requeued(old: str, new: str, sender: str = "app@example.com") -> str:
    """pickup's first line of a requeued message, as Postfix 3.7 logs it."""
    return about_message(new, "pickup", f"uid=102 from=<{sender}> orig_id={old}")


async def test_a_requeued_message_is_followed_under_its_new_queue_id(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    old, new = new_queue_id("OLD"), new_queue_id("NEW")
    message_id = await relayed_message(pool, old, "gone@example.org")
    append(log_file,
           line(old, "gone@example.org", "deferred", "4.3.2", "deferred transport"),
           about_message(old, "postsuper", "requeued"),
           requeued(old, new),
           about_message(new, "cleanup", f"message-id=<{message_id.hex}@example.com>"),
           about_message(new, "qmgr", "from=<app@example.com>, size=640, nrcpt=1 "
                                      "(queue active)"),
           line(new, "gone@example.org", "bounced", "5.1.1", "550 5.1.1 no such user"),
           removed(new))
    await follower.poll()
    await follower.release()  # a stop: the lines of the new queue id go on with the log
    await MaillogFollower(pool, log_file).poll()
    assert await message_status(pool, message_id) == "failed"
    assert (await recipients(pool, message_id))["gone@example.org"][0] == "bounced"
    assert await pool.fetchval("SELECT queue_id FROM outbound_messages WHERE id = $1",
                               message_id) == new
    assert await pool.fetchval("SELECT count(*) FROM suppressions "
                               "WHERE address = 'gone@example.org'") == 1


@pytest.mark.parametrize("text", [
    pytest.param("uid=1000 from=<a> orig_id=4jj6bm3JmjzKWnq>", id="in-a-sender"),
    pytest.param("uid=1000 from=<a>", id="none"),
    pytest.param("uid=x from=<a> orig_id=4jj6bm3JmjzKWnq", id="no-uid"),
])
def test_only_pickups_own_orig_id_is_a_requeue(text: str) -> None:
    for program in ("pickup", "cleanup"):
        split = split_line(about_message("4jj6bm4Ds8zKWqh", program, text))
        assert split is not None
        assert not isinstance(parse_line(split), Requeued)
    split = split_line(requeued("4jj6bm3JmjzKWnq", "4jj6bm4Ds8zKWqh"))
    assert split is not None
    assert parse_line(split) == Requeued("4jj6bm3JmjzKWnq", "4jj6bm4Ds8zKWqh")


async def test_other_mail_requeued_under_a_settled_messages_old_queue_id_leaves_it_alone(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Postfix reuses short queue ids: a message of ours done with long ago keeps its id
    when other mail that got it since is requeued."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    old = new_queue_id("OLD")
    message_id = await relayed_message(pool, old, "done@example.org")
    append(log_file, line(old, "done@example.org", "sent", "2.0.0", "250 ok"), removed(old))
    await follower.poll()
    append(log_file, about_message(old, "postsuper", "requeued"),
           requeued(old, new_queue_id("NEW"), "someone@example.net"))
    await follower.poll()
    assert await pool.fetchval("SELECT queue_id FROM outbound_messages WHERE id = $1",
                               message_id) == old

