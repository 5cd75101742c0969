"""What Postfix tells the milter about the SMTP client, as rules and audit rows see it.

Postfix takes the client's address, name and HELO from XCLIENT (allowed from loopback
here), so each test plays a client from elsewhere: as in production, the milter learns
them from the connect and HELO events Postfix sends after it.
"""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import MailSystem, mail_system_for

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = """version: 1
name: clients
limits: {max_recipients: 2}
rules:
  - name: named-client
    when: {client_name: ["*"]}
    then: {add_header: {X-Named: "yes"}}
  - name: our-address-as-helo
    when: {helo: ["[192.0.2.25]"]}
    then: {add_header: {X-Helo-Literal: "yes"}}
  - name: eight-bit-helo
    when: {helo: ["h*llo.test"]}
    then: {add_header: {X-Helo-8bit: "yes"}}
"""


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    policies: Path = tmp_path_factory.mktemp("policies")
    (policies / "clients.yaml").write_text(POLICY)
    # smtputf8_enable = no: smtpd then takes a HELO that is not UTF-8 as it comes.
    main = {"smtpd_authorized_xclient_hosts": "127.0.0.1",
            "mynetworks": "127.0.0.0/8 192.0.2.0/24", "smtputf8_enable": "no"}
    with mail_system_for(database_url, policy_dir=policies, main=main) as mail_system:
        yield mail_system


def _send_as(system: MailSystem, xclient: str, helo: str | bytes = "clients.test"
             ) -> tuple[bytes, dict[str, object]]:
    """Send one message as the client XCLIENT describes, saying ``helo``: what the relay
    got, its audit row."""
    message_id = f"<{uuid.uuid4()}@clients.test>"
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=20) as smtp:
        smtp.ehlo("clients.test")
        assert smtp.docmd(f"XCLIENT {xclient}")[0] == 220
        if isinstance(helo, bytes):  # smtplib sends only text
            smtp.send(b"EHLO " + helo + b"\r\n")
            assert smtp.getreply()[0] == 250
        else:
            smtp.ehlo(helo)
        smtp.sendmail("a@example.org", ["b@example.net"],
                      f"Message-ID: {message_id}\r\nSubject: x\r\n\r\nhi\r\n".encode())
    data = system.capture.wait_for_message(lambda m: message_id.encode() in m.data).data
    return data, system.audit_row(message_id)


@pytest.mark.parametrize("claimed", ["", " REVERSE_NAME=mx.example.org"])
def test_client_without_reverse_name_matches_no_client_name_glob(
    system: MailSystem, claimed: str
) -> None:
    # Postfix passes such a client to milters as "[192.0.2.7]", not as a name, nor as the
    # name its PTR record claims when that name does not resolve back to it.
    data, row = _send_as(system, f"NAME=[UNAVAILABLE] ADDR=192.0.2.7{claimed}")
    assert b"X-Named:" not in data
    assert row["client_name"] is None
    assert str(row["client_address"]) == "192.0.2.7"


def test_client_with_reverse_name_matches(system: MailSystem) -> None:
    data, row = _send_as(system, "NAME=mx.example.org ADDR=192.0.2.8")
    assert b"X-Named: yes" in data
    assert row["client_name"] == "mx.example.org"


@pytest.mark.parametrize(("helo", "tagged"), [("[192.0.2.25]", True), ("2", False)])
def test_address_literal_helo_glob(system: MailSystem, helo: str, tagged: bool) -> None:
    data, _ = _send_as(system, "NAME=mx.example.org ADDR=192.0.2.8", helo=helo)
    assert (b"X-Helo-Literal: yes" in data) == tagged


def test_helo_not_utf8_is_kept_and_matched(system: MailSystem) -> None:
    # pymilter cannot decode it and calls no callback: once it printed a bare
    # UnicodeDecodeError, and the message went on as if the client had said no HELO.
    data, row = _send_as(system, "NAME=mx.example.org ADDR=192.0.2.9", helo=b"h\xe9llo.test")
    assert b"X-Helo-8bit: yes" in data
    assert row["helo"] == "h\ufffdllo.test"
    log = system.milter.log()
    assert "UnicodeDecodeError" not in log
    assert "the client's HELO is not UTF-8" in log


def test_xclient_without_an_address_is_refused_before_the_milter(system: MailSystem) -> None:
    # As contrib/postfix/README.md says: Postfix passes "unknown" as an IPv4 address,
    # libmilter closes the connection before any callback, Postfix answers every
    # command with milter_default_action. Here so the README learns when that changes.
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=20) as smtp:
        smtp.ehlo("clients.test")
        assert smtp.docmd("XCLIENT NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE]")[0] == 220
        smtp.ehlo("clients.test")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nhi\r\n")
    assert refused.value.smtp_code == 451
    system.postfix.wait_for_log(r"can't read SMFIC_CONNECT reply packet header")


def test_a_proxied_client_without_a_port_is_no_local_submission(system: MailSystem) -> None:
    # A proxy that cannot say the client's port: Postfix passes port 0, as its cleanup
    # does for mail submitted with sendmail(1). Taken for one, the client's third
    # recipient was not refused at RCPT (a local submission's cannot be), and a message
    # it kept deferring was held after local_retry_passes.
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=20) as smtp:
        smtp.ehlo("clients.test")
        assert smtp.docmd("XCLIENT ADDR=127.0.0.1 PORT=[UNAVAILABLE]")[0] == 220
        smtp.ehlo("localhost")
        assert smtp.mail("a@example.org")[0] == 250
        assert [smtp.rcpt(f"r{n}@example.net")[0] for n in range(3)] == [250, 250, 452]
        smtp.rset()
