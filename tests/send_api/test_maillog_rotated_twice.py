"""A log rotated twice while no instance read it (a service down over two of
logrotate's rounds, no compression or ``delaycompress``): the reader read on in the
old file (found by its inode), then jumped to the file at the path, and the lines
of the file rotated in between were never read, without a word.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.logtail import LogTail
from postwarden_admin_api.send.maillog import MaillogFollower

from .test_maillog import OTHERS, append, message_status, new_queue_id, relayed_message, sent


def rotate(log_file: Path, keep: int = 3) -> None:
    """logrotate's ``create``: maillog.1 -> maillog.2, ..., maillog -> maillog.1."""
    for number in range(keep, 0, -1):
        older = log_file.with_name(f"{log_file.name}.{number}")
        if older.exists():
            older.rename(log_file.with_name(f"{log_file.name}.{number + 1}"))
    log_file.rename(log_file.with_name(f"{log_file.name}.1"))
    log_file.write_text("")


async def test_a_log_rotated_twice_while_no_instance_read_it_is_read_whole(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    follower = MaillogFollower(pool, log_file)
    await follower.poll()
    messages = [await relayed_message(pool, queue_id, f"{queue_id.lower()}@example.org")
                for queue_id in (new_queue_id("ONE"), new_queue_id("TWO"),
                                 new_queue_id("NOW"))]
    queue_ids = [await pool.fetchval("SELECT queue_id FROM outbound_messages WHERE id = $1",
                                     message) for message in messages]
    append(log_file, OTHERS)
    await follower.poll()
    await follower.release()  # the service stops
    for days_ago, queue_id in zip((2, 1), queue_ids[:2], strict=True):
        append(log_file, sent(queue_id, f"{queue_id.lower()}@example.org"))
        rotate(log_file)
        then = time.time() - days_ago * 86400  # when it was last written
        os.utime(log_file.with_name("maillog.1"), (then, then))
    append(log_file, sent(queue_ids[2], f"{queue_ids[2].lower()}@example.org"))
    restarted = MaillogFollower(pool, log_file)
    for _ in range(4):
        await restarted.poll()
    assert [await message_status(pool, m) for m in messages] == ["delivered"] * 3


def test_the_files_rotated_in_between_count_as_unread(tmp_path: Path) -> None:
    """Else a reader at the old file's end counted only the file at the path: with it
    empty, it said it had read the log to its end (a relay then decides an interrupted
    attempt without those lines)."""
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    tail = LogTail(log_file)
    tail.resume(log_file.stat().st_ino, 0)
    tail.read(1024)
    append(log_file, OTHERS)
    rotate(log_file)
    then = time.time() - 3600
    os.utime(log_file.with_name("maillog.1"), (then - 60, then - 60))
    assert tail.read(1024) == (OTHERS.encode(), False)
    append(log_file, OTHERS)
    rotate(log_file)
    os.utime(log_file.with_name("maillog.1"), (then, then))
    append(log_file, OTHERS)
    assert tail.unread() == 2 * len(OTHERS)
    assert tail.read(1024) == (OTHERS.encode(), True)
    assert tail.unread() == len(OTHERS)
    assert tail.read(1024) == (OTHERS.encode(), True)
    assert tail.unread() == 0


async def test_the_file_rotated_after_a_compressed_one_is_read(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """logrotate's ``delaycompress`` (Debian's default), two rounds while no instance
    read the log: the file the position is in is compressed (its last lines are lost,
    with a warning), the one rotated after it is not, and was skipped too."""
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    follower = MaillogFollower(pool, log_file)
    await follower.poll()
    lost, kept, now = [await relayed_message(pool, queue_id, f"{queue_id.lower()}@example.org")
                       for queue_id in (new_queue_id("GZ"), new_queue_id("ONE"),
                                        new_queue_id("NOW"))]
    queue_ids = [await pool.fetchval("SELECT queue_id FROM outbound_messages WHERE id = $1",
                                     message) for message in (lost, kept, now)]
    append(log_file, OTHERS)
    await follower.poll()
    await follower.release()  # the service stops
    for queue_id in queue_ids[:2]:
        append(log_file, sent(queue_id, f"{queue_id.lower()}@example.org"))
        rotate(log_file)
    older = log_file.with_name("maillog.2")
    older.with_name("maillog.2.gz").write_bytes(older.read_bytes())  # compressed
    older.unlink()
    append(log_file, sent(queue_ids[2], f"{queue_ids[2].lower()}@example.org"))
    restarted = MaillogFollower(pool, log_file)
    for _ in range(3):
        await restarted.poll()
    assert [await message_status(pool, m) for m in (lost, kept, now)] == [
        "relayed", "delivered", "delivered"]
    assert "was rotated while no instance read it" in caplog.text
