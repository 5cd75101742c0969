"""Postfix's log in RFC 5424's form (rsyslog's RSYSLOG_SyslogProtocol23Format, syslog-ng's
syslog-protocol): read as the traditional forms are, its stamp too."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.syslogline import logged_at
from tests.fixtures.postfix import running_postfix

from .test_maillog import delivery, message_status, sent_through_postfix

STAMP = "2026-12-06T19:00:00.123456+00:00"
MESSAGE = ("4Wq1Zk3sZnz9vBQ: to=<a@example.org>, relay=127.0.0.1[127.0.0.1]:2525, "
           "delay=0.03, delays=0.01/0/0.01/0.01, dsn=2.0.0, status=sent (250 2.0.0 ok)")


@pytest.mark.parametrize("line", [
    pytest.param(f"<22>1 {STAMP} mx1 postfix/smtp 1234 - - {MESSAGE}", id="rsyslog"),
    # rsyslog keeps the space a message logged through syslog(3) starts with.
    pytest.param(f"<22>1 {STAMP} mx1 postfix/smtp 1234 - -  {MESSAGE}", id="two-spaces"),
    pytest.param(f"1 {STAMP} mx1 postfix/smtp 1234 - - {MESSAGE}", id="no-pri"),
    pytest.param(f"{STAMP} mx1 postfix/smtp 1234 - - {MESSAGE}", id="no-pri-no-version"),
    pytest.param(f"<22>1 {STAMP} mx1 postfix/smtp 1234 - - \ufeff{MESSAGE}", id="bom"),
    pytest.param(f'<22>1 {STAMP} mx1 postfix/smtp 1234 - [meta sequenceId="7"]'
                 f'[origin x="a]: \\"b\\" c"] {MESSAGE}', id="structured-data"),
    pytest.param(f"<22>1 {STAMP} mx1 postfix-out/lmtp 1234 ID47 - {MESSAGE}", id="msgid"),
])
def test_rfc5424_lines_are_read(line: str) -> None:
    event = delivery(line)
    assert event is not None
    assert (event.queue_id, event.recipient, event.status, event.dsn) == (
        "4Wq1Zk3sZnz9vBQ", "a@example.org", "delivered", "2.0.0")
    expected = dt.datetime(2026, 12, 6, 19, 0, 0, 123456, tzinfo=dt.UTC).timestamp()
    assert logged_at(line, expected) == expected


@pytest.mark.parametrize("line", [
    pytest.param(f"<22>1 {STAMP} mx1 postfix/smtp - - - {MESSAGE}", id="no-pid"),
    # A quoted value of the structured data is not the message.
    pytest.param(f'<22>1 {STAMP} mx1 app 7 - [x y="{MESSAGE}"] hello', id="in-sd"),
    # A traditional line whose message starts like a pid, MSGID and structured data.
    pytest.param(f"{STAMP} mx1 dovecot: 1 - - {MESSAGE}", id="traditional-no-pid"),
])
def test_rfc5424_lines_are_read_only_from_their_message(line: str) -> None:
    assert delivery(line) is None


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger missing")
def test_a_line_util_linux_logger_writes_in_rfc5424_form_is_read(tmp_path: Path) -> None:
    """As logger --rfc5424 sends it: its structured data says how good its clock is."""
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(10)
        subprocess.run(["logger", "--rfc5424", "-u", str(path), "-d", "-t", "postfix/smtp",
                        "--id=1234", MESSAGE], check=True, timeout=10)
        line = server.recv(65536).decode()
    assert "[timeQuality " in line
    event = delivery(line)
    assert event is not None and (event.queue_id, event.status) == (
        "4Wq1Zk3sZnz9vBQ", "delivered")
    read = time.time()
    logged = logged_at(line, read)
    assert logged is not None and read - 10 < logged <= read


def as_rfc5424(line: str) -> str:
    """A line of Postfix's maillog_file (``Dec 06 19:00:00.123456 mx postfix/smtp[7]:
    ...``) as rsyslog's RSYSLOG_SyslogProtocol23Format writes it."""
    found = re.fullmatch(r"(\w{3} [ \d]\d [\d:.]+) (\S+) (\S+)\[(\d+)\]: (.*)", line)
    assert found is not None, line
    stamp, host, program, pid, message = found.groups()
    logged = dt.datetime.strptime(f"{time.localtime().tm_year} {stamp.split('.')[0]}",
                                  "%Y %b %d %H:%M:%S").astimezone()
    return f"<22>1 {logged.isoformat()} {host} {program} {pid} - -  {message}\n"


@pytest.mark.postfix
async def test_a_delivery_logged_in_rfc5424_form_is_tracked(
    pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    """The real Postfix's lines, as rsyslog writes them in RFC 5424's form."""
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    follower = MaillogFollower(pool, log_file, host=f"r5424-{uuid.uuid4().hex[:6]}")
    await follower.poll()
    recipient = f"r5424-{uuid.uuid4().hex[:8]}@example.org"
    with running_postfix() as (postfix, _capture):
        message_id, result = await sent_through_postfix(pool, postfix.port, follower.host,
                                                        recipient)
        await asyncio.to_thread(postfix.wait_for_log, rf"{result.queue_id}: removed", 30)
        lines = postfix.log().splitlines()
    log_file.write_text("".join(as_rfc5424(line) for line in lines))
    await follower.poll()
    await follower.release()
    assert await message_status(pool, message_id) == "delivered"
    logged = await pool.fetchval(
        "SELECT logged_at FROM outbound_events WHERE message_id = $1 AND event = 'delivered'",
        message_id)
    assert logged is not None and abs(logged.timestamp() - time.time()) < 120
