"""A stop seen from Postfix: an SMTP session idle between messages holds a milter
connection open, and its next command must get Postfix's milter_default_action
(a 4xx) once no transaction is open, not wait for the milter process to exit."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures.milterproc import running_milter
from tests.fixtures.postfix import running_postfix
from tests.fixtures.postgres import wait_until
from tests.milter.milterclient import MilterClient

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

SENDER, RECIPIENT = "alice@example.org", "bob@example.net"


def _queue_ids(database_url: str) -> set[str]:
    async def fetch() -> set[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return {row["queue_id"] for row in await conn.fetch(
                "SELECT queue_id FROM audit_events")}
        finally:
            await conn.close()

    return asyncio.run(fetch())


@contextmanager
def _audit_writes_held(database_url: str) -> Iterator[None]:
    """audit_events locked: the milter's audit writer waits (a stopping milter, in its
    drain) until the block ends, well within its write timeout."""
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database_url))
    try:
        lock = conn.transaction()
        loop.run_until_complete(lock.start())
        loop.run_until_complete(conn.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            loop.run_until_complete(lock.rollback())
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


def _message(message_id: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: before the stop\r\n"
            f"Message-ID: <{message_id}>\r\n\r\nHello.\r\n").encode()


@pytest.mark.parametrize("processes", [1, 2])
def test_a_stop_hangs_up_idle_connections_once_no_transaction_is_open(
        tmp_path: Path, database_url: str, processes: int) -> None:
    """libmilter leaves connections idle between messages open and unanswered after its
    stop, until its listener notices the stop (its poll times out, every 5 s) or the
    process exits; Postfix's next command waited meanwhile. Now, once the last open
    transaction has ended, they are hung up: the idle session's next command gets
    milter_default_action's 4xx while the process still drains its audit queue (held
    here), and the process then exits 0 with every finished transaction's row."""
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text("version: 1\nname: main\n")
    env = {"POSTWARDEN_PROCESSES": str(processes),
           # A stop that waited for the open transaction's deadline would wait this.
           "POSTWARDEN_MESSAGE_TIMEOUT_SECONDS": "3600"}
    with (running_milter(policy_dir, database_url, env=env) as milter,
          running_postfix(milter=milter.postfix_spec) as (postfix, _capture)):
        assert wait_until(lambda: milter.log().count("starting on") == processes, timeout=30)
        with closing(smtplib.SMTP("127.0.0.1", postfix.port, timeout=30)) as idle:
            idle.ehlo("client.postwarden.test")
            idle.sendmail(SENDER, [RECIPIENT], _message("before-stop@example.org"))
            queued = postfix.wait_for_log(
                r"(\w+): message-id=<before-stop@example\.org>").group(1)
            assert wait_until(lambda: queued in _queue_ids(database_url), timeout=20)
            # A transaction in progress on a connection of its own: the stop waits for it.
            busy = MilterClient(milter.env["POSTWARDEN_MILTER_SOCKET"]).open()
            with closing(busy.sock):
                busy.begin("4QSTOPBUSY")
                milter.terminate()
                assert wait_until(lambda: milter.log().count(": stopping\n") == processes,
                                  timeout=10)
                # Accepted while stopping (as a stop waits for transactions): libmilter's
                # listener then polls 5 s afresh, which a stop once waited out while the
                # held audit write below gave up and went to the spool.
                late = MilterClient(milter.env["POSTWARDEN_MILTER_SOCKET"]).open()
                with closing(late.sock), _audit_writes_held(database_url):
                    assert busy.finish("4QSTOPBUSY")[0] == b"c"
                    for hung_up in (busy, late):  # the last transaction ended: idle, hung up
                        assert hung_up.sock.recv(1) == b""
                    code, text = idle.mail(SENDER)
                    assert (code, text[:5]) == (451, b"4.7.1"), text  # milter_default_action
                    # ... as Postfix found the connection closed, not for want of an answer.
                    failed = postfix.wait_for_log(
                        r"can't read SMFIC_MAIL reply packet header: (.*)").group(1)
                    assert "timed out" not in failed, failed
                    assert milter.running()  # still draining: held above
            assert milter.wait(timeout=30) == 0, milter.log()
        assert {queued, "4QSTOPBUSY"} <= _queue_ids(database_url)
        assert "closed" in milter.log() and "idle connection" in milter.log()
        assert "transactions cut" not in milter.log()  # none waited for its deadline
