"""SMTP extensions on the smtpd path, through the real Postfix and the real milter: BDAT
(CHUNKING), SMTPUTF8, 8BITMIME, DSN parameters and PIPELINING, spoken by a raw client
(smtplib speaks no BDAT and pipelines nothing).

Each test checks what the client hears, what was delivered (byte for byte where the
milter changes nothing) and the audit row, whose queue id is the one Postfix logged.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fixtures.postfix import SmtpResult, has_header, wait_for
from tests.fixtures.scripted_smtp import RawClient, commands, dot_stuffed

from . import messages
from .conftest import MailSystem, audit_rows
from .messages import RECIPIENT, SENDER, Delivered, Sample
from .test_postfix_milter import _audited, _changes

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

TRANSACTION = (f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RECIPIENT}>")
OK, GO_ON = 250, 354


def _client(system: MailSystem) -> RawClient:
    client = RawClient(system.postfix.port)
    code, text = client.command("EHLO client.postwarden.test")
    assert code == OK, text
    return client


def _queue_id(reply: tuple[int, str]) -> str:
    queue_id = SmtpResult(reply[0], reply[1], "data").queue_id
    assert queue_id is not None, reply
    return queue_id


def _unchanged_but_received_and_id(delivered: bytes, sent: bytes, protocol: str) -> None:
    """Postfix's Received field first, our X-Postwarden-Id last, nothing else differs."""
    got = Delivered.parse(delivered)
    received, id_field = got.fields[0], got.fields[-1]
    assert re.search(rb"by mx\.postwarden\.test \(Postfix\) with " + protocol.encode(), received)
    assert re.fullmatch(rb"X-Postwarden-Id: [0-9a-f]{32}\r\n", id_field)
    original = Delivered.parse(sent)
    assert delivered == received + b"".join(original.fields) + id_field + b"\r\n" + original.body


def test_bdat_chunks_arrive_byte_identical(mail_system: MailSystem) -> None:
    sample = messages.clean()
    # BDAT does no dot-stuffing: the lines starting with a dot, and a lone dot, are text.
    data = sample.data[: -len(b"Alice\r\n")] + b".\r\nAlice\r\n"
    with _client(mail_system) as client:
        assert "CHUNKING" in client.command("EHLO again.postwarden.test")[1].split("\n")
        assert [code for code, _ in client.pipeline(*TRANSACTION)] == [OK, OK]
        *partial, last = client.bdat(data, chunks=3)
    chunk = -(-len(data) // 3)  # Postfix counts each chunk, and the whole at the last
    assert partial == [(OK, f"2.0.0 Ok: {chunk} bytes")] * 2
    assert last[0] == OK and last[1].startswith(f"2.0.0 Ok: {len(data)} bytes queued as ")

    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    _unchanged_but_received_and_id(delivered.data, data, "ESMTP")
    row = _audited(mail_system, sample, "accept")
    assert row["queue_id"] == _queue_id(last)
    assert row["message_uid"] == Delivered.parse(delivered.data).header("X-Postwarden-Id")


def test_bdat_refusal_is_heard_at_the_last_chunk(mail_system: MailSystem) -> None:
    sample = messages.executable()
    with _client(mail_system) as client:
        client.pipeline(*TRANSACTION)
        *partial, last = client.bdat(sample.data, chunks=2)
    assert [code for code, _ in partial] == [OK]
    assert last == (550, "5.7.1 Executable attachments are not accepted")
    row = _audited(mail_system, sample, "reject")
    assert row["smtp_reply"] == "550 5.7.1 Executable attachments are not accepted"


def test_smtputf8_addresses_and_raw_utf8_headers(mail_system: MailSystem) -> None:
    sender, recipient = "jörg@exämple.org", "bøb@example.net"
    sample = messages.clean(subject="[tag-me] Grüße aus Köln")
    data = sample.data.replace(f"Alice <{SENDER}>".encode(), f"Jörg <{sender}>".encode())
    with _client(mail_system) as client:
        replies = client.pipeline(f"MAIL FROM:<{sender}> SMTPUTF8", f"RCPT TO:<{recipient}>",
                                  "DATA")
        assert [code for code, _ in replies] == [OK, OK, GO_ON]
        reply = client.data(data)
    assert reply[0] == OK, reply

    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    assert (delivered.mail_from, delivered.rcpt_tos) == (sender, (recipient,))
    got, sent = Delivered.parse(delivered.data), Delivered.parse(data)
    assert re.search(rb"\) with UTF8SMTP id ", got.fields[0])
    # The prefix goes in front of the raw UTF-8 (valid here: the client said SMTPUTF8),
    # the parser's flag for 8-bit headers and our id after the rest; nothing else moves.
    tagged = "Subject: [EXT] [tag-me] Grüße aus Köln\r\n".encode()
    expected = [tagged if f.startswith(b"Subject:") else f for f in sent.fields]
    assert got.fields[1:-2] == expected
    assert got.fields[-2] == b"X-Postwarden-Flags: eight_bit_headers\r\n"
    assert re.fullmatch(rb"X-Postwarden-Id: [0-9a-f]{32}\r\n", got.fields[-1])
    assert got.body == sent.body

    queue_id = mail_system.queue_id_of(sample.message_id)
    row = mail_system.audit_row(sample.message_id)
    assert (row["queue_id"], row["action"], row["rules"]) == (queue_id, "accept", ["tag-marked"])
    assert (row["sender"], list(row["recipients"])) == (sender, [recipient])
    assert (row["header_from"], row["subject"]) == (sender, "[tag-me] Grüße aus Köln")
    assert row["message_uid"] == got.header("X-Postwarden-Id")
    assert "eight_bit_headers" in row["flags"]


def test_8bitmime_html_part_is_sanitized_and_the_text_part_kept(mail_system: MailSystem) -> None:
    sample = messages.eight_bit_alternative()
    with _client(mail_system) as client:
        replies = client.pipeline(f"MAIL FROM:<{SENDER}> BODY=8BITMIME",
                                  f"RCPT TO:<{RECIPIENT}>", "DATA")
        assert [code for code, _ in replies] == [OK, OK, GO_ON]
        reply = client.data(sample.data)
    assert reply[0] == OK, reply

    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    got, sent = Delivered.parse(delivered.data), Delivered.parse(sample.data)
    assert got.fields[1:-1] == sent.fields
    text_part = messages.EIGHT_BIT_TEXT.replace("\n", "\r\n").encode()
    assert text_part in got.body  # raw 8-bit, byte for byte
    html = got.body.split(b"Content-Type: text/html; charset=utf-8\r\n", 1)[1]
    assert "siehe unten – Grüße".encode() in html  # still raw UTF-8, not re-encoded
    for hostile in (b"<script", b"document.cookie", b"javascript:", b"onclick", b"onerror"):
        assert hostile not in html

    row = _audited(mail_system, sample, "accept")
    assert row["queue_id"] == _queue_id(reply)
    assert [c["kind"] for c in _changes(row)] == ["html_sanitized"]


def test_dsn_parameters_pass_through_untouched(mail_system: MailSystem) -> None:
    # The relay (the capture server) offers no DSN, so Postfix reports NOTIFY=SUCCESS
    # itself, as "relayed": that report carries what the client asked for.
    sample = messages.clean()
    with _client(mail_system) as client:
        replies = client.pipeline(
            f"MAIL FROM:<{SENDER}> RET=HDRS ENVID=batch+2D42",
            f"RCPT TO:<{RECIPIENT}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Robert@example.net",
            "DATA")
        assert [code for code, _ in replies] == [OK, OK, GO_ON]
        reply = client.data(sample.data)
    assert reply[0] == OK, reply
    queue_id = _queue_id(reply)

    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    _unchanged_but_received_and_id(delivered.data, sample.data, "ESMTP")
    report = mail_system.capture.wait_for_message(
        lambda m: m.mail_from == "<>" and f"X-Postfix-Queue-ID: {queue_id}".encode() in m.data)
    assert report.rcpt_tos == (SENDER,)
    for line in ("Original-Envelope-Id: batch-42", f"Final-Recipient: rfc822; {RECIPIENT}",
                 "Original-Recipient: rfc822;Robert@example.net", "Action: relayed",
                 "Content-Type: text/rfc822-headers"):
        assert f"{line}\r\n".encode() in report.data
    assert b"the figures are in" not in report.data  # RET=HDRS: the headers only

    row = _audited(mail_system, sample, "accept")
    assert row["queue_id"] == queue_id


def _rows_from(database_url: str, sender: str) -> list[dict[str, Any]]:
    return [row for row in audit_rows(database_url) if row["sender"] == sender]


def test_pipelined_messages_on_one_connection(mail_system: MailSystem) -> None:
    """Each message's end of data shares a write with the next transaction's commands;
    one is refused and one reset on the way, and each keeps its own queue id and row."""
    first, refused, html, after_reset = (messages.clean(), messages.executable(),
                                         messages.hostile_html(), messages.clean())
    resetter = "reset@example.org"
    with _client(mail_system) as client:
        assert client.pipeline(*TRANSACTION, "DATA")[-1][0] == GO_ON
        client.send(dot_stuffed(first.data) + commands(*TRANSACTION, "DATA"))
        first_reply, *next_replies = client.replies(4)
        assert [code for code, _ in next_replies] == [OK, OK, GO_ON]
        client.send(dot_stuffed(refused.data) + commands(
            f"MAIL FROM:<{resetter}>", f"RCPT TO:<{RECIPIENT}>", "RSET", *TRANSACTION, "DATA"))
        refused_reply, *next_replies = client.replies(7)
        assert [code for code, _ in next_replies] == [OK, OK, OK, OK, OK, GO_ON]
        client.send(dot_stuffed(html.data) + commands(*TRANSACTION, "DATA"))
        html_reply, *next_replies = client.replies(4)
        assert [code for code, _ in next_replies] == [OK, OK, GO_ON]
        client.send(dot_stuffed(after_reset.data) + commands("QUIT"))
        last_reply, bye = client.replies(2)
    assert refused_reply == (550, "5.7.1 Executable attachments are not accepted")
    assert bye[0] == 221

    accepted: list[tuple[Sample, tuple[int, str]]] = [
        (first, first_reply), (html, html_reply), (after_reset, last_reply)]
    for sample, reply in accepted:
        mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
        assert _audited(mail_system, sample, "accept")["queue_id"] == _queue_id(reply)
    assert len({_queue_id(reply) for _, reply in accepted}) == 3
    _audited(mail_system, refused, "reject")
    assert not [m for m in mail_system.capture.messages
                if has_header("Message-ID", refused.message_id)(m)]

    # The reset transaction: one aborted row. Postfix hands the milter the queue id
    # only once a first recipient was accepted (at the next RCPT or DATA): none here.
    dsn = mail_system.database_url
    assert dsn is not None
    (aborted,) = wait_for(lambda: _rows_from(dsn, resetter))
    assert (aborted["action"], list(aborted["recipients"])) == ("aborted", [RECIPIENT])
    assert aborted["queue_id"] is None and aborted["message_id"] is None
