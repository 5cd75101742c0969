"""The real milter process as MTAs speak the milter protocol to it, step by step
(tests.milter.milterclient): sequences Postfix and sendmail send besides one plain
transaction per connection."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import Milter
import pytest

from tests.fixtures.milterproc import MilterProcess, running_milter
from tests.fixtures.postfix import running_postfix
from tests.fixtures.postgres import wait_until
from tests.milter.milterclient import MilterClient

POLICY = """\
version: 1
name: protocol
rules:
  - name: tag
    when:
      subject: "(?i)tag me"
    then:
      add_header:
        X-Tagged: "yes"
  - name: signed-in
    when: {authenticated: true}
    then:
      add_header:
        X-Signed-In: "yes"
"""


@pytest.fixture(scope="module")
def milter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilterProcess]:
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "protocol.yaml").write_text(POLICY)
    with running_milter(Path(policy_dir)) as process:
        yield process


@pytest.fixture
def client(milter: MilterProcess) -> Iterator[MilterClient]:
    client = MilterClient(milter.env["POSTWARDEN_MILTER_SOCKET"], timeout=10)
    try:
        yield client
    finally:
        client.close()


def _rows(milter: MilterProcess, *queue_ids: str) -> list[dict[str, Any]]:
    """The audit rows of ``queue_ids`` (in the spool: this milter has no database),
    once all are there."""
    def found() -> list[dict[str, Any]]:
        events = [json.loads(line) for path in milter.spool_files()
                  if path.name.startswith("audit-spool") for line in path.read_text().splitlines()]
        rows = [event for event in events if event["queue_id"] in queue_ids]
        return rows if len(rows) == len(queue_ids) else []

    assert wait_until(found, timeout=10)
    return found()


def _tagged(client: MilterClient, queue_id: str) -> list[tuple[bytes, bytes]]:
    """A message the policy tags; the headers the milter adds to it."""
    client.modifications.clear()
    client.macros(b"M", i=queue_id)
    assert client.step(b"M", b"<alice@example.org>\0") == (b"c", b"")
    client.step(b"R", b"<bob@example.net>\0")
    client.step(b"L", b"Subject\0 tag me\0")
    client.step(b"N")
    assert client.finish(queue_id) == (b"c", b"")
    return [data for command, data in client.modifications if command == b"h"]


def test_a_connection_the_mta_reuses_keeps_the_header_leading_space(
        milter: MilterProcess, client: MilterClient) -> None:
    """SMFIC_QUIT_NC: the MTA keeps the milter connection for its next SMTP session,
    which starts at connect, without a new negotiation. pymilter serves it with a new
    object that knew nothing of the first: its messages' headers were read without
    the space after the colon the MTA still sends (the row's size one byte more per
    header) and the headers added went without it (the MTA wrote `X-Tagged:yes`)."""
    assert client.negotiate() & Milter.P_HDR_LEADSPC
    added = []
    for queue_id in ("4QREUSE1", "4QREUSE2"):
        client.connect()
        added.append(_tagged(client, queue_id))
        client.tell(b"K")
    for headers in added:
        assert headers[0] == b"X-Tagged\0 yes\0"
        assert headers[1].startswith(b"X-Postwarden-Id\0 ")
    first, second = _rows(milter, "4QREUSE1", "4QREUSE2")
    assert first["size"] == second["size"]


def test_a_login_name_not_utf8_is_kept(milter: MilterProcess, client: MilterClient) -> None:
    """A SASL login name that is not UTF-8 (an MTA that passes it unsanitized: Postfix
    writes ? for such bytes): pymilter's getsymval cannot decode {auth_authen}, and the
    login was taken as absent, the client as not authenticated."""
    client.open()
    client.tell(b"D", b"Mi\0004QLATIN1\0{auth_authen}\0j\xf6rg\0")
    assert client.step(b"M", b"<alice@example.org>\0") == (b"c", b"")
    client.step(b"R", b"<bob@example.net>\0")
    client.step(b"L", b"Subject\0 hello\0")
    client.step(b"N")
    assert client.finish("4QLATIN1") == (b"c", b"")
    assert (b"h", b"X-Signed-In\0 yes\0") in client.modifications
    (row,) = _rows(milter, "4QLATIN1")
    assert row["auth_user"] == "j\udcf6rg"  # stored as U+FFFD, as every such field
    assert "the MTA's macro {auth_authen} is not UTF-8: kept" in milter.log()


def test_a_size_that_is_no_number_is_ignored(milter: MilterProcess, client: MilterClient) -> None:
    """SIZE=² is a digit to str.isdigit, and no number to int(): MAIL FROM was answered
    451 with a traceback, at every retry. Postfix refuses it first; another MTA may not."""
    client.open()
    client.macros(b"M", i="4QSIZE2")
    assert client.step(b"M", "<alice@example.org>\0SIZE=\u00b2\0".encode()) == (b"c", b"")
    assert "Traceback" not in milter.log()


@pytest.mark.postfix
def test_an_8bit_address_without_a_domain_is_taken(milter: MilterProcess) -> None:
    """With smtputf8_enable=no, Postfix takes 8-bit addresses as sent, and for one
    without a domain its {mail_addr} or {rcpt_addr} (the address with myorigin added)
    holds the same bytes: pymilter's getsymval cannot decode them, and MAIL FROM (or
    RCPT TO) was answered 451 with a traceback, at every retry of the client."""
    with running_postfix(milter.postfix_spec, main={"smtputf8_enable": "no"}) as (postfix, _):
        with closing(smtplib.SMTP("127.0.0.1", postfix.port, timeout=30)) as smtp:
            smtp.command_encoding = "latin-1"  # the bytes as sent, not UTF-8
            smtp.ehlo("client.example")
            assert smtp.mail("b\xe9a")[0] == 250
            assert smtp.rcpt("b\xe9b")[0] == 250
            code, reply = smtp.data(b"Subject: latin-1\r\nMessage-ID: <latin1@example.org>"
                                    b"\r\n\r\nHello.\r\n")
            assert code == 250, reply
    (row,) = _rows(milter, reply.decode().rpartition(" ")[2])
    assert (row["action"], row["sender"], row["recipients"]) == (
        "accept", "b\udce9a", ["b\udce9b"])
    assert "Traceback" not in milter.log()
