"""A log emptied in place (logrotate's ``copytruncate``) while no instance read it.

The file keeps its inode, so the saved position looked valid: a restart went on
there, in the middle of whatever Postfix had written since, and the lines before
it (and the rest of the old file, now in the copy) were never read. The read
position is now saved with a fingerprint of the bytes before it (migration 0024,
its own column; a row without one is trusted as before): the restart sees they
changed, reads the rest of the copy beside the log, then the log from its start.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.logtail import fingerprint, matches
from postwarden_admin_api.send.maillog import MaillogFollower

from .test_maillog import (
    OTHERS,
    Watched,
    accepted_message,
    append,
    follower_at_end,
    message_status,
    new_queue_id,
    relayed_message,
    sent,
    watched,
)

FILLER = "Dec  5 00:00:0{n} mx postfix/smtpd[2]: connect from unknown[192.0.2.{n}]\n"


def test_a_fingerprint_tells_the_bytes_before_the_position() -> None:
    saved = fingerprint(b"line one\n")
    assert matches(saved, b"line one\n") is True
    assert matches(saved, b"line two\n") is False
    assert matches(None, b"x") is None  # a row saved by an older version


@pytest.mark.parametrize("refilled", [
    pytest.param(True, id="refilled-past-the-position"),
    pytest.param(False, id="shorter-than-the-position"),
])
async def test_a_log_emptied_in_place_while_stopped_is_read_from_the_copy_then_its_start(
    pool: asyncpg.Pool, tmp_path: Path, refilled: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    w = await watched(pool, tmp_path)
    read = await relayed_message(pool, (read_id := new_queue_id("READ")), "read@example.org")
    append(w.log_file, OTHERS, sent(read_id, "read@example.org"))
    await w.follower.poll()  # the position is saved; then the service stops
    await w.follower.release()
    append(w.log_file, sent(w.queue_id, w.recipient))  # written while it was stopped
    # copytruncate: the copy, then the log emptied and written on by Postfix.
    shutil.copyfile(w.log_file, tmp_path / "maillog.1")
    with w.log_file.open("r+") as log:
        log.truncate(0)
    later = await relayed_message(pool, (later_id := new_queue_id("NEW")), "new@example.org")
    append(w.log_file, sent(later_id, "new@example.org"),
           *(FILLER.format(n=n) for n in range(9 if refilled else 0)))
    assert (w.log_file.stat().st_size > len(OTHERS) + len(sent(read_id, "read@example.org"))
            ) == refilled
    restarted = MaillogFollower(pool, w.log_file)
    await restarted.poll()
    await restarted.poll()
    assert await message_status(pool, later) == "delivered"
    assert await message_status(pool, w.message_id) == "delivered"
    # The line read before the stop is not read again.
    assert await pool.fetchval("SELECT count(*) FROM outbound_events WHERE message_id = $1 "
                               "AND event = 'delivered'", read) == 1
    assert "emptied in place" not in caplog.text


async def test_lines_written_before_the_copy_are_read_in_it_by_a_running_reader(
    pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    """Between two polls, Postfix logs our line, logrotate copies the log and empties it,
    and Postfix writes on: the line is in the copy only."""
    w = await watched(pool, tmp_path)
    append(w.log_file, OTHERS * 3)
    await w.follower.poll()
    append(w.log_file, sent(w.queue_id, w.recipient))
    shutil.copyfile(w.log_file, tmp_path / "maillog.1")
    with w.log_file.open("r+") as log:
        log.truncate(0)
    later = await relayed_message(pool, (later_id := new_queue_id("NEW")), "new@example.org")
    append(w.log_file, sent(later_id, "new@example.org"), *(FILLER.format(n=n) for n in range(9)))
    await w.follower.poll()
    await w.follower.poll()
    assert await message_status(pool, w.message_id) == "delivered"
    assert await message_status(pool, later) == "delivered"


async def test_a_log_emptied_in_place_without_its_copy_is_read_from_its_start(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    w = await watched(pool, tmp_path)
    append(w.log_file, OTHERS * 3)
    await w.follower.poll()
    await w.follower.release()
    append(w.log_file, sent(w.queue_id, w.recipient))
    with w.log_file.open("r+") as log:  # the copy was compressed away
        log.truncate(0)
    later = await relayed_message(pool, (later_id := new_queue_id("NEW")), "new@example.org")
    append(w.log_file, sent(later_id, "new@example.org"), *(FILLER.format(n=n) for n in range(9)))
    restarted = MaillogFollower(pool, w.log_file)
    await restarted.poll()
    assert await message_status(pool, later) == "delivered"
    assert await message_status(pool, w.message_id) == "relayed"  # its line went with the copy
    assert "was emptied in place while no instance read it" in caplog.text


@pytest.mark.parametrize("older_row", [
    pytest.param(False, id="with-its-fingerprint"),
    pytest.param(True, id="saved-without-one-by-an-older-version"),
])
async def test_a_restart_on_an_untouched_log_goes_on_where_it_stopped(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture, older_row: bool,
) -> None:
    """The fingerprint has a column of its own (migration 0024), saved_by stays a plain
    token; a row without a fingerprint is trusted as before."""
    w = await watched(pool, tmp_path)
    append(w.log_file, sent(w.queue_id, w.recipient), OTHERS)
    await w.follower.poll()
    await w.follower.release()
    row = await pool.fetchrow("SELECT saved_by, mark_fingerprint FROM maillog_positions "
                              "WHERE path LIKE '%' || $1", str(w.log_file))
    assert row["saved_by"].version == 4
    assert matches(row["mark_fingerprint"], OTHERS.encode()[-64:]) is True
    if older_row:
        await pool.execute("UPDATE maillog_positions SET mark_fingerprint = NULL "
                           "WHERE path LIKE '%' || $1", str(w.log_file))
    append(w.log_file, sent(w.queue_id, w.recipient))  # delivered again, say
    restarted = MaillogFollower(pool, w.log_file)
    await restarted.poll()
    assert await pool.fetchval("SELECT count(*) FROM outbound_events WHERE message_id = $1 "
                               "AND event = 'delivered'", w.message_id) == 2
    assert "emptied in place" not in caplog.text


@pytest.mark.parametrize("taken_over", [
    pytest.param(True, id="taken-over"),
    pytest.param(False, id="first-start"),
])
async def test_a_log_emptied_in_place_before_the_reader_read_a_new_byte(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture, taken_over: bool,
) -> None:
    """A reader that took over (or started at the log's end) kept none of the bytes before
    its position: until it read a new one it told a log emptied in place by its size
    alone. A quiet log, then polls that do not run (PostgreSQL away) while logrotate
    copies and empties it and Postfix writes past the position: it read on there,
    mid-line, and the lines before it, ours among them, were never read."""
    if taken_over:
        w = await watched(pool, tmp_path)
        append(w.log_file, OTHERS * 3)
        await w.follower.poll()
        await w.follower.release()
        reader = MaillogFollower(pool, w.log_file)
        await reader.poll()  # takes over; nothing new to read
    else:
        log_file, reader = await follower_at_end(pool, tmp_path, OTHERS * 3)
        queue_id = new_queue_id("ROT")
        w = Watched(log_file, reader, queue_id, "first@example.org",
                    await relayed_message(pool, queue_id, "first@example.org"))
    append(w.log_file, sent(w.queue_id, w.recipient))
    shutil.copyfile(w.log_file, tmp_path / "maillog.1")
    with w.log_file.open("r+") as log:
        log.truncate(0)
    later = await relayed_message(pool, (later_id := new_queue_id("NEW")), "new@example.org")
    append(w.log_file, sent(later_id, "new@example.org"), *(FILLER.format(n=n) for n in range(9)))
    await reader.poll()
    await reader.poll()
    assert await message_status(pool, w.message_id) == "delivered"
    assert await message_status(pool, later) == "delivered"
    assert "emptied in place" not in caplog.text


def smtpd(pid: int, text: str) -> str:
    return f"Dec  5 00:00:01 mx postfix/smtpd[{pid}]: {text}\n"


async def test_a_cut_off_after_lines_were_lost_is_not_taken_for_an_earlier_sessions(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Before Postfix 3.10 a transfer cut off mid-DATA is known by the queue id of its
    smtpd process's last ``client=`` line. Lines lost as the log was emptied in place
    (the session's end, the next one's ``client=``) left the earlier session's queue
    id to it: our message's receipt there was closed as not queued (sent again)."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    ours = await accepted_message(pool, "cut@example.org")
    queue_id = new_queue_id("CUT")
    append(log_file, smtpd(9, f"{queue_id}: client=localhost[127.0.0.1]"),
           f"Dec  5 00:00:01 mx postfix/cleanup[7]: {queue_id}: "
           f"message-id=<{ours.hex}@example.com>\n")
    await follower.poll()
    assert await open_receipt(pool, ours)
    with log_file.open("r+") as log:  # the copy was compressed away
        log.truncate(0)
    append(log_file, smtpd(9, "lost connection after DATA (75 bytes) from x[192.0.2.1]"),
           *(FILLER.format(n=n) for n in range(9)))
    await follower.poll()
    assert "was emptied in place and no copy of it is beside it" in caplog.text
    assert await open_receipt(pool, ours)


async def open_receipt(pool: asyncpg.Pool, message: uuid.UUID) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT FROM relay_receipts WHERE "
                                    "message_id = $1 AND NOT committed)", message))


async def test_a_cut_off_read_after_another_instance_read_on_is_not_taken_for_an_earlier_session(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The smtpd sessions an instance knew are stale once another one read on (the
    session's end, the next one's ``client=``): forgotten at its takeover."""
    log_file, first = await follower_at_end(pool, tmp_path)
    ours = await accepted_message(pool, "taken@example.org")
    queue_id = new_queue_id("TKO")
    append(log_file, smtpd(9, f"{queue_id}: client=localhost[127.0.0.1]"),
           f"Dec  5 00:00:01 mx postfix/cleanup[7]: {queue_id}: "
           f"message-id=<{ours.hex}@example.com>\n")
    await first.poll()
    await pool.execute("UPDATE maillog_positions SET lease_until = now() - interval '1 s' "
                       "WHERE path = $1", first.key)  # it stalled past its lease
    second = MaillogFollower(pool, log_file)
    append(log_file, smtpd(9, "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 data=1"),
           smtpd(9, "connect from x[192.0.2.1]"),
           smtpd(9, f"{new_queue_id('OTH')}: client=x[192.0.2.1]"))
    await second.poll()
    await second.release()
    append(log_file, smtpd(9, "lost connection after DATA (75 bytes) from x[192.0.2.1]"))
    await first.poll()
    assert first.leading
    assert await open_receipt(pool, ours)
