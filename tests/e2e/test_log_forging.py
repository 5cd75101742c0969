"""Control characters a sender writes (here in a Message-ID, which the milter logs on a
re-delivery) reach the milter's log escaped, through the real Postfix: unescaped, an
ESC moved a terminal's cursor, and journald stores a line holding one as a blob that
`journalctl` and grep skip."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.postfix import wait_for
from tests.fixtures.scripted_smtp import RawClient

from .conftest import MailSystem
from .messages import RECIPIENT

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def test_control_characters_from_a_message_reach_the_log_escaped(
    mail_system: MailSystem,
) -> None:
    data = b"Subject: x\r\nMessage-ID: <forged\x1b[2J\x0bid@example.org>\r\n\r\nhi\r\n.\r\n"
    with RawClient(mail_system.postfix.port) as client:
        assert client.command("EHLO client.postwarden.test")[0] == 250
        for _ in range(2):  # the second is a re-delivery, logged with its Message-ID
            for line in ("MAIL FROM:<forger@example.org>", f"RCPT TO:<{RECIPIENT}>", "DATA"):
                assert client.command(line)[0] in (250, 354)
            client.send(data)
            assert client.reply()[0] == 250
    wait_for(lambda: "re-delivery of message-id" in mail_system.milter.log(), 20)
    [line] = [x for x in mail_system.milter.log().splitlines() if "re-delivery" in x]
    assert line.endswith(r"re-delivery of message-id <forged\x1b[2J\x0bid@example.org>")


def test_a_sender_cannot_forge_the_fields_of_its_verdict_line(mail_system: MailSystem) -> None:
    """A quoted local part may hold spaces and a '>': unescaped, a script reading the
    line's fields by name took the sender's nrcpt=, rules= and reply= for the milter's."""
    sender = r'"x> nrcpt=0 rules=forged changes=- reply=-\\"@example.org'
    with RawClient(mail_system.postfix.port) as client:
        assert client.command("EHLO client.postwarden.test")[0] == 250
        for line in (f"MAIL FROM:<{sender}>", f"RCPT TO:<{RECIPIENT}>", "DATA"):
            assert client.command(line)[0] in (250, 354)
        client.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
        assert client.reply()[0] == 250
    line = wait_for(lambda: re.search(r'\] accept from=<"x.*', mail_system.milter.log()), 20)
    assert line[0] == (r'] accept from=<"x\x3e\x20nrcpt=0\x20rules=forged\x20changes=-'
                       r'\x20reply=-\x5c\x5c"@example.org> nrcpt=1 rules=- changes=- reply=-')
