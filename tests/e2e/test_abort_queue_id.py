"""A message with one recipient whose client hangs up during DATA, through the real
Postfix and the real milter: its aborted audit row, and the milter's log line, carry
the queue id Postfix logged for the session, so an admin can join the two logs."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.postfix import wait_for
from tests.fixtures.scripted_smtp import RawClient, commands

from . import messages
from .conftest import MailSystem, audit_rows
from .messages import RECIPIENT

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def _session_queue_id(system: MailSystem) -> str:
    """The queue id smtpd logged (at the accepted RCPT) in the session it lost in DATA."""
    lost = system.postfix.wait_for_log(r"postfix/smtpd\[(\d+)\]: lost connection after DATA")
    opened = re.findall(rf"postfix/smtpd\[{lost.group(1)}\]: (\w+): client=",
                        system.postfix.log()[:lost.start()])
    assert opened, "no client= line before the lost connection"
    return str(opened[-1])


def test_a_client_gone_during_data_leaves_a_row_with_the_queue_id(
    mail_system: MailSystem,
) -> None:
    sender = "gone-during-data@example.org"
    head, _, body = messages.clean().data.partition(b"\r\n\r\n")
    with RawClient(mail_system.postfix.port) as client:
        replies = [client.command(line) for line in (
            "EHLO client.postwarden.test", f"MAIL FROM:<{sender}>", f"RCPT TO:<{RECIPIENT}>",
            "DATA")]
        assert [code for code, _ in replies] == [250, 250, 250, 354]
        client.send(head + b"\r\n\r\n" + body.splitlines(keepends=True)[0])
        client.send(commands("more of the body, never ended by a lone dot"))
    queue_id = _session_queue_id(mail_system)

    dsn = mail_system.database_url
    assert dsn is not None
    (row,) = wait_for(lambda: [r for r in audit_rows(dsn) if r["sender"] == sender], 20)
    assert (row["action"], list(row["recipients"])) == ("aborted", [RECIPIENT])
    assert row["queue_id"] == queue_id
    wait_for(lambda: re.search(rf"\[{queue_id} [0-9a-f]+\] aborted from=<{re.escape(sender)}>",
                               mail_system.milter.log()))
