"""Envelope address rules through the real Postfix: the milter is given an address as
the client wrote it, and Postfix delivers ``"ceo"@example.net``,
``@relay.example.net:ceo@example.net``, ``example.net!ceo`` and ``ceo%example.net`` to
ceo@example.net (and a bare ``ceo`` to ceo@ its myorigin), so a rule on that address must
hold for them too."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = """version: 1
name: addresses
rules:
  - name: to-ceo
    when: {recipient: [ceo@example.net]}
    then: reject
  - name: from-spammer
    when: {sender: [spammer@example.org]}
    then: reject
  # The fixture's myorigin, which Postfix appends to an address without a domain.
  - name: to-local-ceo
    when: {recipient: [ceo@postwarden.test]}
    then: reject
  - name: from-local-spammer
    when: {sender_domain: [postwarden.test]}
    then: reject
"""


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    directory = Path(tmp_path_factory.mktemp("policies"))
    (directory / "addresses.yaml").write_text(POLICY)
    with mail_system_for(database_url, policy_dir=directory) as mail_system:
        yield mail_system


@pytest.mark.parametrize(("sender", "recipient"), [
    (SENDER, "ceo@example.net"),
    (SENDER, '"ceo"@example.net'),
    (SENDER, "@relay.example.net:ceo@example.net"),
    ('"spammer"@example.org', "bob@example.net"),
    ("@relay.example.org:spammer@example.org", "bob@example.net"),
    (SENDER, "example.net!ceo"),
    ("spammer%example.org", "bob@example.net"),
    (SENDER, "ceo"),
    ("spammer", "bob@example.net"),
], ids=["plain", "quoted", "source-route", "quoted-sender", "source-routed-sender",
        "bang-path", "percent-hack-sender", "bare-recipient", "bare-sender"])
def test_a_rule_on_an_address_holds_for_every_way_of_writing_it(
    system: MailSystem, sender: str, recipient: str,
) -> None:
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=60) as smtp:
        smtp.ehlo("client.postwarden.test")
        assert smtp.mail(sender)[0] == 250
        assert smtp.rcpt(recipient)[0] == 250
        code, reply = smtp.data(messages.clean().data)
    assert (code, reply) == (550, b"5.7.1 Message rejected by policy")
