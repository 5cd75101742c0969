"""An attempt cut off mid-DATA is decided "not queued" from smtpd's line, at once.

Postfix's smtpd logs ``lost connection after DATA (N bytes)`` (or ``timeout``) when
the connection ends before the final dot; it never queues such a message. The log
follower did not read that line: cleanup's Message-ID line left the receipt open, and
the row was held back for OPEN_RECEIPT_LIMIT (10 minutes) before it was sent again,
or failed on its last attempt. Postfix 3.7 names no queue id in the line (the
session's ``client=`` line does, under the same smtpd pid), and cleanup logs the
Message-ID after it. A connection lost after the final dot must still leave the
receipt open: Postfix may have queued the message. Runs against a private real
Postfix; its cuts are made by hand, as a relay's cut connection leaves them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send.cutoffs import CutOffs
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.receipts import ReceiptLine
from postwarden_admin_api.send.syslogline import split_line
from tests.fixtures.postfix import CaptureServer, PostfixInstance, running_postfix, wait_for

from .test_receipts import until
from .test_relay import database_url  # noqa: F401 - a fixture
from .test_relay_qmgr_behind import qmgr_pid, until_listed
from .test_review_held_receipt import hang_up_after_the_dot
from .test_review_log_lag import cut_off, relayed

pytestmark = pytest.mark.postfix
HOST = "pf-cut-mid-data"
SMTPD_TIMEOUT = 2  # seconds, for a transfer left hanging mid-DATA


@pytest.fixture
def relay_host() -> Iterator[tuple[PostfixInstance, CaptureServer]]:
    with running_postfix(main={"smtpd_timeout": f"{SMTPD_TIMEOUT}s"}) as started:
        yield started


@pytest.fixture
def postfix(relay_host: tuple[PostfixInstance, CaptureServer]) -> PostfixInstance:
    return relay_host[0]


@pytest.fixture
async def follower(pool: asyncpg.Pool, postfix: PostfixInstance
                   ) -> AsyncIterator[MaillogFollower]:
    follower = MaillogFollower(pool, postfix.maillog, host=HOST)
    task = asyncio.create_task(follower.run())
    await until(pool, "SELECT EXISTS (SELECT FROM maillog_positions WHERE path LIKE $1)",
                f"{HOST}:%")
    yield follower
    await stop_task(task)


def cut_mid_data(port: int, sender: str, recipient: str, content: bytes) -> None:
    """A transfer cut off before the final dot (its headers sent whole): Postfix removes
    the file, and smtpd logs the lost connection."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail(sender)
        smtp.rcpt(recipient)
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(content[:-2] + b"\r\n")  # no dot: the message never ends
        smtp.close()


def left_hanging(port: int, sender: str, recipient: str, content: bytes) -> None:
    """A transfer that stops sending mid-DATA (its headers sent whole) until smtpd's
    timeout ends it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail(sender)
        smtp.rcpt(recipient)
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(content[:-2] + b"\r\n")
        assert smtp.getreply()[0] == 421  # smtpd's timeout, then it hangs up
        smtp.close()


async def logged(postfix: PostfixInstance, follower: MaillogFollower, *texts: str) -> None:
    """Until Postfix's log holds each of ``texts`` and the follower has read past them."""
    await asyncio.to_thread(wait_for, lambda: all(t in postfix.log() for t in texts))
    await follower.read_past(time.monotonic())


async def cut(pool: asyncpg.Pool, postfix: PostfixInstance, follower: MaillogFollower,
              how: str) -> uuid.UUID:
    """A row whose attempt was cut off mid-DATA (``how``: ``lost`` connection or left to
    smtpd's ``timeout``), once the follower has read what Postfix logged of it."""
    recipient = f"cut-{uuid.uuid4().hex[:8]}@example.org"
    message = await cut_off(pool, recipient)
    row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message)
    send = cut_mid_data if how == "lost" else left_hanging
    await asyncio.to_thread(send, postfix.port, row["envelope_from"], recipient,
                            row["content"])
    await logged(postfix, follower, f"{how} connection after DATA" if how == "lost"
                 else "timeout after DATA", f"message-id=<{message.hex}@")
    return message


@pytest.mark.parametrize("how", ["lost", "timeout"])
async def test_a_transfer_cut_off_mid_data_is_sent_again_at_once(
    pool: asyncpg.Pool, relay_host: tuple[PostfixInstance, CaptureServer],
    follower: MaillogFollower, how: str,
) -> None:
    postfix, capture = relay_host
    message = await cut(pool, postfix, follower, how)
    stored = await relayed(pool, postfix.port, follower, message, attempts=3)
    assert stored["status"] == "relayed"
    await logged(postfix, follower, f"{stored['queue_id']}: removed")
    assert len([m for m in capture.messages if message.hex.encode() in m.data]) == 1


async def test_a_last_attempt_cut_off_mid_data_fails_at_once(
    pool: asyncpg.Pool, postfix: PostfixInstance, follower: MaillogFollower,
) -> None:
    message = await cut(pool, postfix, follower, "lost")
    stored = await relayed(pool, postfix.port, follower, message, attempts=1)
    assert stored["status"] == "failed"
    assert stored["last_error"].startswith("no answer to the message sent")


@pytest.fixture
def paused_qmgr(postfix: PostfixInstance) -> Iterator[None]:
    """qmgr paused: a finished file stays in the incoming queue, its receipt open."""
    pid: int = wait_for(lambda: qmgr_pid(postfix))
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def open_receipt(pool: asyncpg.Pool, message: uuid.UUID) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT FROM relay_receipts WHERE "
                                    "message_id = $1 AND NOT committed)", message))


def finished_then_cut(port: int, finished: asyncpg.Record, cut: asyncpg.Record) -> None:
    """One session: ``finished`` sent whole (250), then ``cut`` cut off mid-DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.sendmail(finished["envelope_from"], finished["recipients"], finished["content"])
        smtp.mail(cut["envelope_from"])
        smtp.rcpt(cut["recipients"][0])
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(cut["content"][:-2] + b"\r\n")
        smtp.close()


async def test_only_the_message_cut_off_in_a_session_is_taken_for_not_queued(
    pool: asyncpg.Pool, postfix: PostfixInstance, follower: MaillogFollower,
    paused_qmgr: None,
) -> None:
    """The relay sends several messages in one session: a cut-off is its last one's."""
    rows = [await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1",
                                await cut_off(pool, f"{name}@example.org"))
            for name in ("whole", "cut")]
    await asyncio.to_thread(finished_then_cut, postfix.port, *rows)
    await logged(postfix, follower, "lost connection after DATA",
                 *(f"message-id=<{row['message_id'].hex}@" for row in rows))
    assert await open_receipt(pool, rows[0]["message_id"])  # qmgr yet to take it in
    assert not await open_receipt(pool, rows[1]["message_id"])


async def test_a_connection_lost_after_the_final_dot_leaves_the_receipt_open(
    pool: asyncpg.Pool, postfix: PostfixInstance, follower: MaillogFollower,
    paused_qmgr: None,
) -> None:
    """Postfix may have queued it (here it did): only qmgr's line or the queue tells."""
    message = await cut_off(pool, "dot@example.org")
    row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message)
    await hang_up_after_the_dot(postfix.port, row["envelope_from"], "dot@example.org",
                                row["content"])
    await logged(postfix, follower, f"message-id=<{message.hex}@", "disconnect from")
    assert await open_receipt(pool, message)
    queue_id = await pool.fetchval("SELECT queue_id FROM relay_receipts WHERE message_id = $1",
                                   message)
    await until_listed(postfix, [("incoming", queue_id)])


@pytest.mark.parametrize(("lines", "expected"), [
    # Postfix 3.7: the queue id is the session's, its client= line's, under the same pid.
    (["postfix/smtpd[9]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: lost connection after DATA (75 bytes) from localhost[127.0.0.1]"],
     ReceiptLine("4AB", None, committed=False)),
    (["postfix/smtpd[9]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: timeout after DATA (75 bytes) from localhost[127.0.0.1]"],
     ReceiptLine("4AB", None, committed=False)),
    # Postfix 3.10 and later name it.
    (["postfix/smtpd[9]: 4AB: lost connection after DATA (75 bytes) from x[127.0.0.1]"],
     ReceiptLine("4AB", None, committed=False)),
    (["postfix/smtpd[9]: NOQUEUE: lost connection after DATA (0 bytes) from x[127.0.0.1]"],
     None),
    # Another smtpd process's session, or one that ended.
    (["postfix/smtpd[8]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: lost connection after DATA (75 bytes) from localhost[127.0.0.1]"],
     None),
    (["postfix/smtpd[9]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1/1",
      "postfix/smtpd[9]: connect from localhost[127.0.0.1]",
      "postfix/smtpd[9]: lost connection after DATA (75 bytes) from localhost[127.0.0.1]"],
     None),
    # After the final dot, cleanup may have committed the file.
    (["postfix/smtpd[9]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: timeout after END-OF-MESSAGE from localhost[127.0.0.1]"], None),
    (["postfix/smtpd[9]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=0/1"],
     None),
    # cleanup names the Message-ID after smtpd's line: no receipt opens.
    (["postfix/smtpd[9]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: lost connection after DATA (75 bytes) from localhost[127.0.0.1]",
      f"postfix/cleanup[7]: 4AB: message-id=<{'a' * 32}@x.test>"],
     ReceiptLine("4AB", None, committed=False)),
    # ... unless the queue id was started afresh (reused) by then.
    (["postfix/smtpd[9]: 4AB: client=localhost[127.0.0.1]",
      "postfix/smtpd[9]: lost connection after DATA (75 bytes) from localhost[127.0.0.1]",
      "postfix/smtpd[5]: 4AB: client=localhost[127.0.0.1]",
      f"postfix/cleanup[7]: 4AB: message-id=<{'a' * 32}@x.test>"],
     ReceiptLine("4AB", uuid.UUID("a" * 32), committed=False)),
])
def test_cut_off_lines_are_read(lines: list[str], expected: ReceiptLine | None) -> None:
    cut_offs = CutOffs()
    read = [cut_offs.receipt(split) for line in lines
            if (split := split_line(f"Dec  7 04:34:00 mx {line}")) is not None]
    assert read[-1] == expected


def test_cut_off_lines_in_rfc_5424_form_are_read() -> None:
    """The pid is a field of its own there."""
    cut_offs = CutOffs()
    head = "<22>1 2026-12-07T04:34:00.123456+00:00 mx postfix/smtpd {} - - "
    read = [cut_offs.receipt(split) for pid, text in (
        (9, "4AB: client=localhost[127.0.0.1]"),
        (8, "lost connection after DATA (75 bytes) from localhost[127.0.0.1]"),
        (9, "lost connection after DATA (75 bytes) from localhost[127.0.0.1]"),
    ) if (split := split_line(head.format(pid) + text)) is not None]
    assert read[1:] == [None, ReceiptLine("4AB", None, committed=False)]
