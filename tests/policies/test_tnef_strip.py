"""A file inside a TNEF winmail.dat is stripped on its own: the stream is rewritten
without it, a notice in its place, the other files byte-identical."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postwarden_policies import (
    Accept,
    AttachmentStripped,
    MessageFacts,
    Quarantine,
    ReplaceBody,
    RewritePlan,
    evaluate_message,
    load_policy_set,
    parse_message,
)
from postwarden_policies.rewrite import RewriteError, rewrite_body
from postwarden_policies.tnef import SIGNATURE, Attachment, Reader
from postwarden_policies.tnefrewrite import NOTICE_NAME
from postwarden_policies.transfer import decode

from .policy_helpers import policy
from .test_tnef import (
    ENV,
    EXE,
    INBOUND,
    INVOICE,
    NOTE,
    _attachment,
    _attribute,
    _mail,
    _message_object,
    _stream,
    _string8,
    _unicode,
)

MACRO = _attachment("INVOIC~1.DOC", b"PK\x03\x04macro", _unicode(0x3707, "invoice.docm"))
REPORT = _attachment("report.pdf", b"%PDF-1.7\n" + bytes(range(256)))
# Sanitizing HTML, so signed parts are kept intact (signed_mail: skip).
STRIP_EXE = policy(
    "sanitize: {html: true}\nrules:\n  - name: s\n    when: {attachment: {filename: ['*.exe']}}\n"
    "    then: strip_attachment\n"
)


def _carrier(facts: MessageFacts) -> bytes:
    """The decoded TNEF stream of the message's winmail.dat."""
    part = next(p for p in facts.parts if p.filename == "winmail.dat")
    return decode(facts.raw[part.body_start : part.body_end], part.transfer_encoding)


def _files(stream: bytes) -> list[Attachment]:
    listing = Reader().read(memoryview(stream), 100)
    assert listing.readable
    return listing.attachments


def _runs(stream: bytes) -> list[bytes]:
    return [stream[a.start : a.end] for a in _files(stream)]


def _attributes(stream: bytes) -> Iterator[tuple[int, bytes, int]]:
    """Each attribute's id, value and checksum as written."""
    pos = len(SIGNATURE) + 2
    while pos < len(stream):
        _, ident, length = struct.unpack_from("<BII", stream, pos)
        value = stream[pos + 9 : pos + 9 + length]
        yield ident, value, struct.unpack_from("<H", stream, pos + 9 + length)[0]
        pos += 11 + length


def _strip(raw: bytes, *filenames: str) -> tuple[MessageFacts, MessageFacts, tuple[object, ...]]:
    """Strip the files named ``filenames`` from ``raw``: the facts before, after, the changes."""
    facts = parse_message(raw, ENV)
    wanted = tuple((p.index, "s") for p in facts.parts if p.filename in filenames)
    result = rewrite_body(facts, RewritePlan(strip=wanted, sanitize_html=None))
    assert result.body is not None
    return facts, parse_message(raw[: facts.body_offset] + result.body, ENV), result.changes


def test_one_of_three_files_is_replaced_by_a_notice_the_others_kept_byte_for_byte() -> None:
    before, after, changes = _strip(_mail(_stream(NOTE, INVOICE, REPORT)), "INVOIC~1.EXE")
    assert changes == (
        AttachmentStripped(part="2.2", filename="INVOIC~1.EXE", size=len(EXE),
                           sha256=hashlib.sha256(EXE).hexdigest(), reason="s"),
    )
    old, new = _carrier(before), _carrier(after)
    kept = _runs(old)
    assert [run for i, run in enumerate(_runs(new)) if i != 1] == [kept[0], kept[2]]
    notice = _files(new)[1]
    assert (notice.names, notice.content_type) == ([NOTICE_NAME] * 2, "text/plain")
    text = bytes(notice.data).decode("utf-8-sig")
    assert "INVOIC~1.EXE" in text and hashlib.sha256(EXE).hexdigest() in text
    assert f"{len(EXE)} bytes" in text
    assert all(checksum == sum(value) & 0xFFFF for _, value, checksum in _attributes(new))
    assert new.startswith(old[: _files(old)[0].start])  # the message's own attributes
    # Re-parsed, the message lists the other two files as before, the notice between.
    listed = [(p.path, p.filenames, p.decoded_size, p.detected_type) for p in after.parts[3:]]
    was = [(p.path, p.filenames, p.decoded_size, p.detected_type) for p in before.parts[3:]]
    assert [listed[0], listed[2]] == [was[0], was[2]]
    assert listed[1][:2] == ("2.2", (NOTICE_NAME,))
    assert after.flags == before.flags - {"ambiguous_filename"}  # only the exe had two names
    # Everything but the winmail.dat part's body is as it was.
    carrier = before.parts[2]
    head, tail = before.raw[: carrier.body_start], before.raw[carrier.body_end :]
    assert after.raw.startswith(head) and after.raw.endswith(tail)


def test_two_files_of_one_stream_and_an_attached_message_go_together() -> None:
    """A file in the attached message goes with it, though a strip selects it too."""
    forwarded = _attachment(None, None, _unicode(0x3001, "Fwd: run this"),
                            _message_object(_stream(_attachment("run.js", b"x"))))
    before, after, changes = _strip(
        _mail(_stream(forwarded, NOTE, INVOICE)), "Fwd: run this", "run.js", "INVOIC~1.EXE"
    )
    assert [c.filename for c in changes if isinstance(c, AttachmentStripped)] == [
        "Fwd: run this", "INVOIC~1.EXE"
    ]
    assert [(p.path, p.filename) for p in after.parts[3:]] == [
        ("2.1", NOTICE_NAME), ("2.2", "notes.txt"), ("2.3", NOTICE_NAME)
    ]
    assert _runs(_carrier(after))[1] == _runs(_carrier(before))[1]


def test_the_example_policy_strips_a_macro_document_from_winmail_dat() -> None:
    """Through the public API: a strip rule that selects a file in a winmail.dat
    delivers the message with that file removed instead of holding it."""
    raw = _mail(_stream(NOTE, MACRO, REPORT))
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert isinstance(verdict.decision, Accept), verdict.decision
    assert "strip-macro-documents" in verdict.rules
    assert [(c.part, c.filename) for c in verdict.changes if isinstance(c, AttachmentStripped)] == [
        ("2.2", "INVOIC~1.DOC")
    ]
    body = next(e.body for e in verdict.edits if isinstance(e, ReplaceBody))
    facts = parse_message(raw, ENV)
    new = parse_message(raw[: facts.body_offset] + body, ENV)
    assert [p.filename for p in new.parts[3:]] == ["notes.txt", NOTICE_NAME, "report.pdf"]


def _signed(inner: bytes) -> bytes:
    return (
        b"From: someone@elsewhere.test\r\nSubject: s\r\n"
        b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s\r\n'
        b"\r\n--s\r\n" + inner.split(b"\r\n", 2)[2]
        + b"\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n"
    )


def _8bit(tnef: bytes) -> bytes:
    """The stream as it is in the message, the way a careless gateway may send it."""
    mail = _mail(b"")
    return mail.replace(b"base64", b"8bit").replace(b"\r\n\r\n--b--", tnef + b"\r\n--b--")


_REND = len(_attachment(None, None))  # where INVOICE's attributes after attAttachRendData start
HELD = [
    pytest.param(
        _mail(_stream(_attachment(None, None, _unicode(0x3001, "Fwd"),
                                  _message_object(_stream(NOTE, INVOICE))))),
        "inside an attached message", id="in-an-attached-message",
    ),
    pytest.param(_mail(_stream(NOTE, INVOICE) + b"\x02junk"), "unreadable", id="unreadable"),
    pytest.param(_signed(_mail(_stream(NOTE, INVOICE))), "signed part", id="signed"),
    pytest.param(
        _mail(_stream(NOTE, INVOICE[:_REND] + _attribute(1, 0x00078008, b"x\0") + INVOICE[_REND:])),
        "message attribute", id="message-attribute-among-its-own",
    ),
    pytest.param(_8bit(_stream(_attachment("a.txt", b"bare\nLF"), INVOICE)),
                 "transfer encoding", id="8bit-carrier-with-a-bare-lf"),
]


@pytest.mark.parametrize(("raw", "why"), HELD)
def test_what_cannot_be_rewritten_safely_is_held(raw: bytes, why: str) -> None:
    verdict = evaluate_message(STRIP_EXE, raw, ENV)
    assert isinstance(verdict.decision, Quarantine), verdict.decision
    assert verdict.decision.reason.startswith("rewrite failed")
    assert why in verdict.decision.reason
    with pytest.raises(RewriteError, match=why):
        facts = parse_message(raw, ENV)
        exe = next(p for p in facts.parts if p.filename == "INVOIC~1.EXE")
        rewrite_body(facts, RewritePlan(strip=((exe.index, "s"),), sanitize_html=None))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 600), st.binary(min_size=1, max_size=8))
def test_stripping_from_a_stream_overwritten_anywhere_strips_or_holds(at: int, junk: bytes) -> None:
    good = _stream(NOTE, INVOICE, _attachment(None, None, _message_object(_stream(INVOICE))))
    at %= len(good)
    raw = _mail(good[:at] + junk + good[at + len(junk) :])
    verdict = evaluate_message(STRIP_EXE, raw, ENV)
    assert "internal_error" not in verdict.flags
    assert isinstance(verdict.decision, Accept | Quarantine)


PAGE = _attachment("page.html", b"<p>hi</p><script>alert(1)</script>",
                   _string8(0x370E, "text/html"))  # PR_ATTACH_MIME_TAG


def test_an_html_file_inside_a_tnef_is_held_where_html_is_sanitized() -> None:
    """Its bytes are the stream's: no entity to clean alone, and passed on as it is, its
    script would reach whoever opens it (it went out unsanitized before)."""
    verdict = evaluate_message(STRIP_EXE, _mail(_stream(NOTE, PAGE)), ENV)
    assert isinstance(verdict.decision, Quarantine), verdict.decision
    assert "inside a TNEF cannot be sanitized" in verdict.decision.reason
    not_sanitizing = policy("rules:\n  - name: s\n    when: {attachment: {filename: ['*.exe']}}\n"
                            "    then: strip_attachment\n")
    kept = evaluate_message(not_sanitizing, _mail(_stream(NOTE, PAGE)), ENV)
    assert isinstance(kept.decision, Accept) and kept.changes == ()


def test_an_html_file_a_rule_strips_from_a_tnef_needs_no_sanitizing() -> None:
    strip_html = policy("sanitize: {html: true}\nrules:\n  - name: s\n"
                        "    when: {attachment: {filename: ['*.html']}}\n"
                        "    then: strip_attachment\n")
    verdict = evaluate_message(strip_html, _mail(_stream(NOTE, PAGE)), ENV)
    assert [c.filename for c in verdict.changes] == ["page.html"]


def test_a_mime_part_labelled_x_tnef_is_stripped_like_any_other() -> None:
    """Only a file a TNEF lists is carried: a MIME part may name x-tnef as its own
    transfer encoding, and its multipart parent is no TNEF."""
    raw = (b"From: a@elsewhere.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b"
           b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--b\r\nContent-Type: application/octet-stream; name=a.exe\r\n"
           b"Content-Transfer-Encoding: x-tnef\r\n\r\nMZ payload\r\n--b--\r\n")
    verdict = evaluate_message(STRIP_EXE, raw, ENV)
    assert [c.filename for c in verdict.changes] == ["a.exe"]


def test_a_stream_after_a_file_whose_notice_moves_is_checked_where_it_went() -> None:
    # A notice in a multipart/alternative goes first: the winmail.dat before the file it
    # replaces moves one place down, its files with it.
    raw = _mail(_stream(NOTE, INVOICE)).replace(b"multipart/mixed", b"multipart/alternative")
    raw = raw.replace(b"\r\n--b--", b"\r\n--b\r\nContent-Type: application/pdf; name=a.pdf"
                      b"\r\n\r\n%PDF-1.7\r\n--b--")
    _, new, changes = _strip(raw, "INVOIC~1.EXE", "a.pdf")
    assert [(p.path, p.filename) for p in new.parts] == [
        ("", None), ("1", None), ("2", None), ("3", "winmail.dat"), ("3.1", "notes.txt"),
        ("3.2", NOTICE_NAME)]
    assert sorted(c.part for c in changes if isinstance(c, AttachmentStripped)) == ["2.2", "3"]
