"""Mail through a real Postfix and the real milter: what the client hears, what arrives,
what is logged.

The policy set is tests/e2e/policies (small limits, so the tests stay fast).
Every test also checks the audit row of its message: one row, carrying the
queue id that Postfix's own log gives for the same Message-ID.
"""

from __future__ import annotations

import base64
import email
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from postwarden_milter.decider import INLINE_BYTES
from postwarden_policies.sanitizer_process import ISOLATE_CHARS
from tests.fixtures.postfix import has_header, send_message
from tests.fixtures.processes import children_of

from . import messages
from .conftest import MailSystem
from .messages import RECIPIENT, SENDER, Delivered, Sample

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def _send(system: MailSystem, sample: Sample) -> Any:
    return send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT])


def _audited(system: MailSystem, sample: Sample, action: str) -> dict[str, Any]:
    """The message's one audit row, with Postfix's queue id for it; returns the row."""
    queue_id = system.queue_id_of(sample.message_id)
    row = system.audit_row(sample.message_id)
    assert row["queue_id"] == queue_id
    assert row["action"] == action
    assert row["sender"] == SENDER
    assert list(row["recipients"]) == [RECIPIENT]
    assert row["instance"] == "e2e"
    assert str(row["client_address"]) == "127.0.0.1"
    assert row["size"] > 0
    return row


def _changes(row: dict[str, Any]) -> list[dict[str, Any]]:
    changes = row["changes"]
    parsed: list[dict[str, Any]] = json.loads(changes) if isinstance(changes, str) else changes
    return parsed


def test_clean_message_arrives_byte_identical(mail_system: MailSystem) -> None:
    sample = messages.clean()
    result = _send(mail_system, sample)
    assert result.accepted, result
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))

    got = Delivered.parse(delivered.data)
    sent = Delivered.parse(sample.data)
    # Postfix prepends exactly one Received field (naming its queue id); the
    # milter appends X-Postwarden-Id after the last header. Nothing else differs.
    received, id_field = got.fields[0], got.fields[-1]
    assert got.names()[0] == "received"
    assert re.search(rb"by mx\.postwarden\.test \(Postfix\) with ESMTP id "
                     + result.queue_id.encode() + rb"\b", received)
    assert got.names()[-1] == "x-postwarden-id"
    assert delivered.data == received + b"".join(sent.fields) + id_field + b"\r\n" + sent.body
    assert delivered.mail_from == SENDER
    assert delivered.rcpt_tos == (RECIPIENT,)

    row = _audited(mail_system, sample, "accept")
    assert row["queue_id"] == result.queue_id
    assert row["message_uid"] == got.header("X-Postwarden-Id")
    assert row["subject"] == "Quarterly report"
    assert row["header_from"] == SENDER
    assert _changes(row) == []
    assert row["policy_hash"]


def test_html_message_arrives_sanitized(mail_system: MailSystem) -> None:
    sample = messages.hostile_html()
    result = _send(mail_system, sample)
    assert result.accepted, result
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    body = Delivered.parse(delivered.data).body.lower()
    for hostile in (b"<script", b"document.cookie", b"javascript:", b"onclick", b"onerror",
                    b"url("):
        assert hostile not in body
    assert b"see below" in body
    assert b'<p style="color:navy">regards, alice' in body

    row = _audited(mail_system, sample, "accept")
    sanitized = [c for c in _changes(row) if c["kind"] == "html_sanitized"]
    assert len(sanitized) == 1
    removed = dict((what, count) for what, count in sanitized[0]["removed"])
    assert removed["style:url("] == 1 and all(count > 0 for count in removed.values())
    assert sanitized[0]["bytes_after"] < sanitized[0]["bytes_before"]


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        # the charset only its <meta> tag names
        ("text/html", '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'),
        # readers read us-ascii as windows-1252
        ("text/html; charset=us-ascii", ""),
    ],
)
def test_sanitized_8bit_html_arrives_with_the_letters_readers_show(
    mail_system: MailSystem, content_type: str, head: str
) -> None:
    sample = messages.cp1252_html(content_type, head)
    assert _send(mail_system, sample).accepted
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    assert Delivered.parse(delivered.data).body == b"<p>Caf&#233; &#8220;quoted&#8221;</p>\r\n"


def test_utf16_html_sent_8bit_arrives_in_base64_not_shifted_into_markup(
    mail_system: MailSystem
) -> None:
    """nh3 writes "&#10;" as LF (bytes 0A 00), and Postfix completes the lone LF of the
    milter's body to CRLF: one byte more shifted the rest of the part, and the CJK text
    the sanitizer had checked reached the reader as <img onerror=...> (then such a part
    was held). In base64 no hop touches its bytes."""
    smuggled = "".join(chr(ord(c) << 8) for c in "<img src=x onerror=alert(1)> ")
    html = ("<p>a&#10;b</p><script>x()</script><p>" + smuggled + "</p>").encode("utf-16-le")
    head = messages.single_part("text/html; charset=utf-16le",
                                [("Content-Transfer-Encoding", "8bit")], "")
    sample = Sample(head.message_id, head.data + html)
    assert _send(mail_system, sample).accepted
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    message = email.message_from_bytes(delivered.data)
    assert message.get_all("Content-Transfer-Encoding") == ["base64"]
    shown = message.get_payload(decode=True).decode("utf-16-le")
    assert shown == "<p>a\nb</p><p>" + smuggled + "</p>"
    _audited(mail_system, sample, "accept")


def test_utf16_html_in_lines_arrives_as_its_sender_wrote_it(mail_system: MailSystem) -> None:
    """Postfix completes each lone LF byte with a CR before the milter sees it: re-encoded
    as it came, the lines after the first read as CJK text. Its CRs are dropped again,
    as local delivery drops them, before it is checked and encoded."""
    text = "<p>Dear Bob,</p>\n<p>the menu:</p>\n<script>x()</script><p>Alice</p>\n"
    head = messages.single_part("text/html; charset=utf-16le",
                                [("Content-Transfer-Encoding", "8bit")], "")
    sample = Sample(head.message_id, head.data + text.encode("utf-16-le"))
    assert _send(mail_system, sample).accepted
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    shown = email.message_from_bytes(delivered.data).get_payload(decode=True)
    assert shown.decode("utf-16-le") == "<p>Dear Bob,</p>\n<p>the menu:</p>\n<p>Alice</p>\n"


def test_utf16_text_sent_8bit_goes_on_as_postfix_passes_it(mail_system: MailSystem) -> None:
    """Postfix completes each lone LF byte of UTF-16 text sent 8bit with a CR, which
    shifts the lines after it into CJK text for the reader. The milter leaves such a
    text/plain part as it is, by decision (SECURITY.md): the shift is the hop's, it makes
    no markup of plain text, and re-encoding would change a message no policy changed
    (its DKIM signature broken); UTF-16 HTML alone goes out in base64."""
    text = "Hello Bob,\nsee you at noon.\n".encode("utf-16-le")
    head = messages.single_part("text/plain; charset=utf-16le",
                                [("Content-Transfer-Encoding", "8bit")], "")
    sample = Sample(head.message_id, head.data + text)
    assert _send(mail_system, sample).accepted
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    got = Delivered.parse(delivered.data)
    assert got.header("Content-Transfer-Encoding") == "8bit"
    assert got.body == text.replace(b"\n", b"\r\n") + b"\r\n"
    assert _changes(_audited(mail_system, sample, "accept")) == []


def test_large_html_is_sanitized_in_a_child_process(mail_system: MailSystem) -> None:
    """A part over ISOLATE_CHARS is cleaned by a child of the milter, which can be killed
    (here on libmilter's own thread: the message is under the inline size)."""
    copies = ISOLATE_CHARS // len(messages.HOSTILE_HTML) + 100
    sample = messages.hostile_html(copies)
    assert ISOLATE_CHARS < len(sample.data) < INLINE_BYTES
    assert _send(mail_system, sample).accepted
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    body = Delivered.parse(delivered.data).body.lower()
    assert b"<script" not in body and b"onclick" not in body
    assert body.count(b"see below") == copies

    [sanitized] = [c for c in _changes(_audited(mail_system, sample, "accept"))
                   if c["kind"] == "html_sanitized"]
    assert dict(sanitized["removed"])["style:url("] == copies
    assert mail_system.milter.pid is not None
    assert any(b"sanitizer_process" in Path(f"/proc/{child}/cmdline").read_bytes()
               for child in children_of(mail_system.milter.pid))


def test_executable_attachment_rejected_at_smtp(mail_system: MailSystem) -> None:
    sample = messages.executable()
    result = _send(mail_system, sample)
    assert (result.code, result.stage) == (550, "data"), result
    assert result.text.startswith("5.7.1 ")

    queue_id = mail_system.queue_id_of(sample.message_id)
    mail_system.postfix.wait_for_log(rf"{queue_id}: milter-reject: END-OF-MESSAGE .*5\.7\.1")
    row = _audited(mail_system, sample, "reject")
    assert row["smtp_reply"].startswith("550 5.7.1")
    assert "block-executables" in row["rules"]
    assert not [m for m in mail_system.capture.messages
                if has_header("Message-ID", sample.message_id)(m)]


def test_oversized_attachment_replaced_by_notice(mail_system: MailSystem) -> None:
    payload = random.Random(7).randbytes(200 * 1024)  # over the policy's 100 KiB
    sample = messages.with_attachment("scan.pdf", b"%PDF-1.7\n" + payload, "application/pdf")
    result = _send(mail_system, sample)
    assert result.accepted, result
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    got = Delivered.parse(delivered.data)
    assert len(delivered.data) < 50 * 1024
    assert b"See the attachment." in got.body  # the untouched text part stays
    assert b"scan.pdf" in got.body  # the notice names what was removed
    sent = Delivered.parse(sample.data)
    # Only the body changed: the original header fields are all still there, in order.
    assert [f for f in got.fields if f in sent.fields] == sent.fields

    row = _audited(mail_system, sample, "accept")
    stripped = [c for c in _changes(row) if c["kind"] == "attachment_stripped"]
    assert len(stripped) == 1
    assert stripped[0]["filename"] == "scan.pdf"
    assert stripped[0]["size"] == len(payload) + len(b"%PDF-1.7\n")
    assert stripped[0]["sha256"] == hashlib.sha256(b"%PDF-1.7\n" + payload).hexdigest()


def test_a_stripped_quoted_printable_file_is_recorded_as_sent(mail_system: MailSystem) -> None:
    # RFC 2045 6.7 (3): blanks ending an encoded line are a gateway's padding, which
    # decoders drop (an encoder writes a file's own as "=20"); after "=" the padding
    # leaves a soft line break. Kept, the notice and the audit row gave another size
    # and SHA-256 than the file the sender attached.
    # Lines longer than an encoded line may be, each ending in a blank of the file's own.
    line = b"%06d 0 obj << /Length %d /Filter /FlateDecode /Producer (test) >> stream \xe2\x9c\x93 "
    payload = b"\r\n".join([b"%PDF-1.7", *(line % (n, n) for n in range(1500))])  # > 100 KiB
    sample = messages.with_attachment("scan.pdf", payload, "application/pdf",
                                      encoding="quoted-printable")
    head, _, encoded = sample.data.partition(b"quoted-printable\r\n\r\n")
    padded = re.sub(rb"(?m)\r$", b" \t \r", encoded.partition(b"--b1--")[0])
    assert padded.count(b"= \t \r\n") > 100 and b"=20 \t \r\n" in padded  # soft breaks
    data = head + b"quoted-printable\r\n\r\n" + padded + b"--b1--\r\n"
    result = send_message(mail_system.postfix.port, data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    digest = hashlib.sha256(payload).hexdigest()
    *_, notice = email.message_from_bytes(delivered.data).walk()
    assert f"({len(payload)} bytes, SHA-256 {digest})".encode() in notice.get_payload(decode=True)
    row = _audited(mail_system, sample, "accept")
    (stripped,) = [c for c in _changes(row) if c["kind"] == "attachment_stripped"]
    assert (stripped["size"], stripped["sha256"]) == (len(payload), digest)


def test_quarantined_message_lands_in_hold_queue(mail_system: MailSystem) -> None:
    sample = messages.clean(subject="[quarantine-me] wire transfer")
    result = _send(mail_system, sample)
    assert result.accepted, result
    queue_id = result.queue_id
    assert queue_id is not None
    mail_system.postfix.wait_for_log(rf"{queue_id}: milter-hold: END-OF-MESSAGE")
    assert queue_id in mail_system.postfix.held_queue_ids()
    assert not [m for m in mail_system.capture.messages
                if has_header("Message-ID", sample.message_id)(m)]
    row = _audited(mail_system, sample, "quarantine")
    assert "quarantine-marked" in row["rules"]


def test_message_over_max_message_bytes_gets_552(mail_system: MailSystem) -> None:
    sample = messages.big_text(600 * 1024, subject="Too big")  # policy limit: 512 KiB
    result = _send(mail_system, sample)
    assert result.code == 552, result
    assert result.text.startswith("5.3.4 ")
    queue_id = mail_system.queue_id_of(sample.message_id)
    mail_system.postfix.wait_for_log(rf"{queue_id}: milter-reject: .*5\.3\.4")
    row = _audited(mail_system, sample, "reject")
    assert row["smtp_reply"].startswith("552 5.3.4")
    assert row["rules"] == ["limit:max_message_bytes"]  # as eval names it: search finds it


def test_a_raw_latin1_subject_is_prefixed_not_deferred(mail_system: MailSystem) -> None:
    # pymilter hands header values to libmilter as strict UTF-8: the prefixed raw
    # Latin-1 Subject used to fail the message (451) instead of being tagged, then
    # was delivered with U+FFFD for its 8-bit bytes.
    sample = messages.clean(subject="[tag-me] Passwort f@llig")
    data = sample.data.replace(b"f@llig", b"f\xe4llig")
    result = send_message(mail_system.postfix.port, data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    got = Delivered.parse(delivered.data)
    # pymilter cannot send raw bytes: they go out in an encoded word of the text read
    assert got.header("Subject") == "[EXT] [tag-me] Passwort =?UTF-8?Q?f=C3=A4llig?="
    row = _audited(mail_system, sample, "accept")
    assert row["rules"] == ["tag-marked"]


def test_header_edits_count_the_copies_we_add_and_replace_a_forged_id(
    mail_system: MailSystem,
) -> None:
    # Postfix's chgheader index counts the copies a milter adds: the second rule's
    # removal reaches the sender's X-Note and the first rule's. A sender's own
    # X-Postwarden-Id goes, so the one a reader finds is ours.
    sample = messages.clean(subject="[renote-me] figures")
    forged = b"X-Note: from the sender\r\nX-Postwarden-Id: forged\r\n\r\n"
    data = sample.data.replace(b"\r\n\r\n", b"\r\n" + forged, 1)
    result = send_message(mail_system.postfix.port, data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    got = Delivered.parse(delivered.data)
    assert got.names().count("x-note") == 1 and got.header("X-Note") == "second"
    row = _audited(mail_system, sample, "accept")
    assert got.names().count("x-postwarden-id") == 1
    assert got.header("X-Postwarden-Id") == row["message_uid"]


@pytest.mark.parametrize(("nested", "cte"), [(False, "7bit"), (True, "7bit"), (False, "binary")],
                         ids=["top-level", "in-multipart", "binary"])
def test_a_sanitized_line_past_998_octets_arrives_whole(
    mail_system: MailSystem, nested: bool, cte: str
) -> None:
    """nh3 writes each "&" of a URL as "&amp;": a 7bit line of 900 octets with no space
    to break at came out past SMTP's 998, and Postfix's SMTP client broke it inside the
    URL. Such a part now goes out quoted-printable, which readers join again. Postfix
    sends "binary" as it sends 8bit (it offers no BINARYMIME): its lines alike."""
    url = "https://shop.test/?" + "a=1&" * 220
    html = f'<p><a href="{url}">offer</a></p>\n<script>x()</script>\n'
    if nested:
        sample = messages.single_part(
            "multipart/alternative; boundary=b1", [],
            "--b1\nContent-Type: text/html; charset=us-ascii\n"
            f"Content-Transfer-Encoding: {cte}\n\n{html}--b1--\n")
    else:
        sample = messages.single_part("text/html; charset=us-ascii",
                                      [("Content-Transfer-Encoding", cte)], html)
    assert _send(mail_system, sample).accepted
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    assert max(map(len, delivered.data.split(b"\r\n"))) <= 998
    [html_part] = [p for p in email.message_from_bytes(delivered.data).walk()
                   if p.get_content_type() == "text/html"]
    shown = html_part.get_payload(decode=True)
    assert url.replace("&", "&amp;").encode() in shown and b"<script" not in shown


@pytest.mark.parametrize(("codec", "label"), [("utf-16-le", "utf-16le"),
                                              ("utf-16-be", "utf-16be")])
def test_a_body_rule_finds_its_word_in_utf16_text_sent_8bit(
    mail_system: MailSystem, codec: str, label: str
) -> None:
    """Postfix gives the milter each line ended by CRLF: after "\\n" (0A 00 in UTF-16LE),
    one byte more, and the words of the next line read as CJK text to body rules."""
    text = "Hello Bob,\nbodymark-refuse-me\nAlice\n".encode(codec)
    head = messages.single_part(f"text/plain; charset={label}",
                                [("Content-Transfer-Encoding", "8bit")], "")
    sample = Sample(head.message_id, head.data + text)
    result = _send(mail_system, sample)
    assert not result.accepted and "Refused by a body rule" in str(result), result


@pytest.mark.parametrize("content_type", ["text/plain", "text/html; charset=utf-8"])
def test_a_body_rule_reads_utf16_text_by_its_byte_order_mark(
    mail_system: MailSystem, content_type: str
) -> None:
    """A byte order mark overrules the label for readers (WHATWG's decode: browsers and
    the webmail showing it); rules read such text as bytes of Latin letters and NULs."""
    text = "\ufeffHello Bob,\r\nbodymark-refuse-me\r\n".encode("utf-16-le")
    head = messages.single_part(content_type, [("Content-Transfer-Encoding", "base64")], "")
    encoded = base64.encodebytes(text).replace(b"\n", b"\r\n")
    sample = Sample(head.message_id, head.data + encoded)
    result = _send(mail_system, sample)
    assert not result.accepted and "Refused by a body rule" in str(result), result


def test_a_utf16_text_file_sent_as_the_message_8bit_arrives_as_its_notice(
    mail_system: MailSystem
) -> None:
    """Past max_attachment_bytes, a message that is one UTF-16 text file becomes its
    notice: in ASCII under that label readers showed CJK text, and in UTF-16 its NUL
    bytes cannot go 8bit, so the message was held. The notice goes in base64."""
    text = ("\ufeff" + "Line of the log\n" * 4000).encode("utf-16-le")
    head = messages.single_part(
        "text/plain; charset=utf-16",
        [("Content-Disposition", 'attachment; filename="log.txt"'),
         ("Content-Transfer-Encoding", "8bit")], "")
    sample = Sample(head.message_id, head.data + text)
    assert _send(mail_system, sample).accepted
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    message = email.message_from_bytes(delivered.data)
    assert message.get_all("Content-Transfer-Encoding") == ["base64"]
    shown = message.get_payload(decode=True).decode("utf-16")
    assert shown.startswith('The attachment "log.txt" (')
    _audited(mail_system, sample, "accept")
