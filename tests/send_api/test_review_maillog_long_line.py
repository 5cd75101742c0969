"""A log line without its end is not held whole in memory.

The follower keeps the unfinished last line of each read until its newline comes.
A run of bytes with no newline (a log another program writes to, the NUL-filled
tail a crash can leave) was held, and copied again at every read, whatever its
size. Past MAX_LINE a line is skipped to its end instead; its rest, when it comes,
is no line of its own, and the read position saved never points into it.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send import maillog as maillog_module

from .test_maillog import (
    accepted_message,
    append,
    follower_at_end,
    line,
    new_queue_id,
    relay_as,
    sent,
)

READ = 64 * 1024


async def test_a_line_without_its_end_is_skipped_not_held(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maillog_module, "MAX_READ", READ)
    victim, other = "victim@example.org", "other@example.org"
    message = await accepted_message(pool, victim, other)
    queue_id = new_queue_id("QLONG")
    await relay_as(pool, message, queue_id)
    log_file, follower = await follower_at_end(pool, tmp_path)
    limit = maillog_module.MAX_LINE
    # An endless line whose end reads as a bounce of ours, then a real line.
    append(log_file, "x" * (limit + 5 * READ)
           + "Nov 23 15:12:49 mx " + line(queue_id, victim, "bounced", "5.1.1", "550 no"),
           sent(queue_id, other))
    size = log_file.stat().st_size
    held = []
    for _ in range(200):  # bounded: the log is read READ bytes a poll
        await follower.poll()
        held.append(len(follower._partial))
        saved = await pool.fetchval("SELECT position FROM maillog_positions")
        if saved == size:
            break
    assert saved == size
    assert max(held) <= limit
    statuses = dict(await pool.fetch("SELECT address, status FROM outbound_recipients "
                                     "WHERE message_id = $1", message))
    assert statuses == {victim: "relayed", other: "delivered"}
    assert not await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                                   victim)


async def test_a_restart_inside_a_skipped_line_goes_on_from_its_start(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maillog_module, "MAX_READ", READ)
    log_file, follower = await follower_at_end(pool, tmp_path)
    start = log_file.stat().st_size
    append(log_file, "y" * (maillog_module.MAX_LINE + 2 * READ))
    for _ in range(100):  # bounded: the log is read READ bytes a poll
        await follower.poll()
        if follower._tail.position == log_file.stat().st_size:
            break
    # The unfinished line is not held, yet the position saved stays at its start: a
    # reader that takes over finds the whole line, not its tail as a line of its own.
    assert len(follower._partial) == 0
    assert await pool.fetchval("SELECT position FROM maillog_positions") == start
