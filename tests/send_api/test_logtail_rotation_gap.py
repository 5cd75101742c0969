"""The gap of a rename-and-create rotation (logrotate's ``create``).

Postfix writes on in the renamed file until its postrotate makes it reopen the
log, and the new file may not be readable until postrotate's ``setfacl``. The
follower moved to the new file as soon as the old one was read to its end and
closed the old one first: lines written to the old file afterwards were never
read, and a new file it could not open yet raised out of the read.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.logtail import GRACE_SECONDS, MISSING_SECONDS, LogTail
from postwarden_admin_api.send.maillog import MaillogFollower

from .test_maillog import OTHERS, append, new_queue_id, relayed_message, sent, timeline, watched


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rotate(log_file: Path, new_content: bytes = b"") -> Path:
    """Rename the log and create the next one (logrotate's ``create``)."""
    old = log_file.with_name(log_file.name + ".1")
    log_file.rename(old)
    log_file.write_bytes(new_content)
    return old


def read_all(tail: LogTail) -> bytes:
    return tail.read(1 << 20)[0]


def test_lines_written_to_a_renamed_file_before_postfix_reopens_are_read(
    tmp_path: Path
) -> None:
    log_file = tmp_path / "postfix.log"
    log_file.write_bytes(b"line1\n")
    tail = LogTail(log_file)
    assert read_all(tail) == b"line1\n"
    old = rotate(log_file)
    assert read_all(tail) == b""  # polled before postrotate made Postfix reopen
    append(old, "line2-still-in-old-file\n")
    assert read_all(tail) == b"line2-still-in-old-file\n"
    append(log_file, "line3-new-file\n")  # reopened
    assert tail.read(1 << 20) == (b"line3-new-file\n", True)


def test_a_renamed_file_is_left_once_quiet_when_the_new_one_stays_empty(
    tmp_path: Path
) -> None:
    log_file, clock = tmp_path / "postfix.log", Clock()
    log_file.write_bytes(b"line1\n")
    tail = LogTail(log_file, clock)
    read_all(tail)
    old_inode = tail.inode
    old = rotate(log_file)
    read_all(tail)
    clock.now += GRACE_SECONDS - 0.1
    append(old, "line2\n")  # not quiet: counted again from the next read finding none
    assert read_all(tail) == b"line2\n"
    assert read_all(tail) == b""
    clock.now += GRACE_SECONDS - 0.1
    assert (read_all(tail), tail.inode) == (b"", old_inode)
    clock.now += 0.2
    assert tail.read(1 << 20) == (b"", True)
    assert tail.inode == log_file.stat().st_ino


def test_a_new_file_not_readable_yet_is_tried_again_with_the_old_one_read_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Created 0600 root before postrotate's setfacl; Postfix writes on in the old one."""
    log_file = tmp_path / "postfix.log"
    log_file.write_bytes(b"line1\n")
    tail = LogTail(log_file)
    read_all(tail)
    old = rotate(log_file, b"new1\n")
    real_open = os.open

    def refused(path: str | Path, flags: int, *args: int) -> int:
        if Path(path) == log_file:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refused)
    with caplog.at_level(logging.WARNING, logger="postwarden_admin_api.send.logtail"):
        assert read_all(tail) == b""
        append(old, "line2\n")
        assert read_all(tail) == b"line2\n"
        assert read_all(tail) == b""
    assert caplog.text.count(f"cannot open {log_file}") == 1
    monkeypatch.setattr(os, "open", real_open)  # the ACL granted
    assert tail.read(1 << 20) == (b"new1\n", True)


async def test_a_restart_in_the_gap_reads_the_old_files_last_lines_once_then_the_new_one(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The saved position stays in the old file until the follower moves on."""
    w = await watched(pool, tmp_path)
    later = await relayed_message(pool, (later_id := new_queue_id("NEW")), "new@example.org")
    append(w.log_file, OTHERS)
    await w.follower.poll()
    old = rotate(w.log_file)
    await w.follower.poll()  # before Postfix reopened its log
    append(old, sent(w.queue_id, w.recipient))
    await w.follower.release()  # the service stops, and starts again
    restarted = MaillogFollower(pool, w.log_file)
    await restarted.poll()
    append(w.log_file, sent(later_id, "new@example.org"))  # reopened
    await restarted.poll()
    await restarted.poll()
    assert await timeline(pool, w.message_id) == ["delivered"]
    assert await timeline(pool, later) == ["delivered"]


def test_a_copytruncate_copy_is_left_as_soon_as_it_is_read(tmp_path: Path) -> None:
    log_file = tmp_path / "postfix.log"
    log_file.write_bytes(b"line1\nline2\n")
    tail = LogTail(log_file, Clock())  # a clock that never moves: no grace counts down
    assert tail.read(6)[0] == b"line1\n"
    shutil.copyfile(log_file, tmp_path / "postfix.log.1")  # copytruncate
    log_file.write_bytes(b"")
    assert read_all(tail) == b"line2\n"  # the rest, from the copy
    assert tail.read(1 << 20) == (b"", True)  # no one writes to a copy: on to the path
    assert tail.inode == log_file.stat().st_ino


def test_a_log_that_never_appears_is_told_once_a_minute_has_passed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A maillog_path Postfix does not write (a typo, maillog_file unset) tracked nothing,
    said only by the INFO line at the start."""
    log_file, clock = tmp_path / "postfix.log", Clock()
    tail = LogTail(log_file, clock)
    with caplog.at_level(logging.INFO):
        assert read_all(tail) == b""
        clock.now += MISSING_SECONDS - 1
        assert read_all(tail) == b""
        assert "does not exist" not in caplog.text  # a rotation's gap, say
        clock.now += 1
        for _ in range(3):
            assert read_all(tail) == b""
        assert caplog.text.count("does not exist") == 1
        log_file.write_bytes(b"line1\n")
        assert read_all(tail) == b"line1\n"
        assert f"can open {log_file} now" in caplog.text
