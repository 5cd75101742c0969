"""TNEF (winmail.dat): the attachments inside are listed, so attachment rules see
them; a broken stream is flagged, never a crash."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postwarden_policies import (
    Envelope,
    Quarantine,
    Reject,
    evaluate,
    evaluate_message,
    load_policy_set,
    parse_message,
)
from postwarden_policies.tnef import SIGNATURE, Reader

from .policy_helpers import policy

ENV = Envelope(sender="x@elsewhere.test", recipients=("alice@example.com",))
INBOUND = Path(__file__).resolve().parents[2] / "policies" / "examples" / "inbound-default.yaml"
EXE = b"MZ\x90\x00" + bytes(200)
_IID = bytes(range(16))


def _attribute(level: int, ident: int, data: bytes) -> bytes:
    checksum = struct.pack("<H", sum(data) & 0xFFFF)
    return struct.pack("<BII", level, ident, len(data)) + data + checksum


def _stream(*attachments: bytes) -> bytes:
    message_class = _attribute(1, 0x00078008, b"IPM.Microsoft Mail.Note\0")
    return SIGNATURE + b"\x01\x00" + message_class + b"".join(attachments)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _unicode(prop: int, text: str) -> bytes:
    encoded = text.encode("utf-16-le") + b"\0\0"
    return struct.pack("<HHII", 0x1F, prop, 1, len(encoded)) + _padded(encoded)


def _string8(prop: int, text: str) -> bytes:
    encoded = text.encode("cp1252") + b"\0"
    return struct.pack("<HHII", 0x1E, prop, 1, len(encoded)) + _padded(encoded)


def _message_object(stream: bytes) -> bytes:
    """PR_ATTACH_DATA_OBJ of an attached Outlook message: an interface id, a stream."""
    return struct.pack("<HHII", 0x0D, 0x3701, 1, len(_IID + stream)) + _padded(_IID + stream)


def _attachment(title: str | None, data: bytes | None, *properties: bytes) -> bytes:
    out = _attribute(2, 0x00069002, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0, 0, 0))
    if title is not None:
        out += _attribute(2, 0x00018010, title.encode("cp1252") + b"\0")
    if data is not None:
        out += _attribute(2, 0x0006800F, data)
    if properties:
        out += _attribute(2, 0x00069005, struct.pack("<I", len(properties)) + b"".join(properties))
    return out


def _mail(tnef: bytes, content_type: bytes = b"application/ms-tnef",
          name: bytes = b"winmail.dat") -> bytes:
    body = base64.encodebytes(tnef).replace(b"\n", b"\r\n")
    return (
        b"From: someone@elsewhere.test\r\nSubject: s\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: " + content_type + b'; name="' + name + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n--b--\r\n"
    )


INVOICE = _attachment("INVOIC~1.EXE", EXE, _unicode(0x3707, "invoice.pdf.exe"),
                      _string8(0x370E, "Application/X-MSDownload"))
NOTE = _attachment("notes.txt", b"hello")


def test_an_executable_in_winmail_dat_is_refused_by_the_example_policy() -> None:
    verdict = evaluate_message(load_policy_set([INBOUND]), _mail(_stream(NOTE, INVOICE)), ENV)
    assert isinstance(verdict.decision, Reject)
    assert verdict.rules[0] == "block-executables"


def test_the_attachments_are_listed_below_the_tnef_part() -> None:
    facts = parse_message(_mail(_stream(NOTE, INVOICE)), ENV)
    assert "malformed" not in facts.flags
    carrier, note, invoice = facts.parts[2:]
    assert (carrier.filename, carrier.detected_type) == ("winmail.dat", "application/vnd.ms-tnef")
    assert [(p.path, p.parent, p.depth, p.uuencoded) for p in (note, invoice)] == [
        ("2.1", carrier.index, 2, True), ("2.2", carrier.index, 2, True)
    ]
    assert (note.filenames, note.decoded_size, note.content_type) == (
        ("notes.txt",), 5, "application/octet-stream"
    )
    # Outlook shows the long name, older readers the title: both are tested.
    assert invoice.filenames == ("INVOIC~1.EXE", "invoice.pdf.exe")
    assert "ambiguous_filename" in facts.flags
    assert (invoice.content_type, invoice.detected_type, invoice.decoded_size) == (
        "application/x-msdownload", "application/x-dosexec", len(EXE)
    )


def test_an_attached_outlook_message_is_read_too() -> None:
    inner = _stream(_attachment("run.js", b"#!/bin/sh\n"))
    forwarded = _attachment(None, None, _unicode(0x3001, "Fwd: run this"), _message_object(inner))
    facts = parse_message(_mail(_stream(forwarded, NOTE)), ENV)
    assert [(p.path, p.filename, p.detected_type) for p in facts.parts[3:]] == [
        ("2.1", "Fwd: run this", "application/vnd.ms-tnef"),
        ("2.1.1", "run.js", "text/x-shellscript"),
        ("2.2", "notes.txt", None),
    ]
    rule = policy("rules:\n  - name: js\n    when: {attachment: {filename: ['*.js']}}\n"
                  "    then: reject\n")
    assert isinstance(evaluate(rule, facts).decision, Reject)


def test_a_disk_image_in_winmail_dat_is_found_by_its_marks_past_the_head() -> None:
    iso = bytes(0x8000) + b"\x01CD001\x01" + bytes(100)
    vhd = bytes(1000) + b"conectix" + bytes(504)
    facts = parse_message(_mail(_stream(_attachment("a.txt", iso), _attachment("b.txt", vhd))),
                          ENV)
    assert [p.detected_type for p in facts.parts[3:]] == [
        "application/x-iso9660-image", "application/x-vhd"]


def test_tnef_content_is_read_whatever_the_part_declares() -> None:
    facts = parse_message(_mail(_stream(INVOICE), b"application/octet-stream", b"data.bin"), ENV)
    assert "invoice.pdf.exe" in facts.parts[-1].filenames


BROKEN = [
    pytest.param(_stream(NOTE, INVOICE)[:-9], 2, id="cut-short"),
    pytest.param(_stream(NOTE) + b"\x02\x10\x80\x01\x00\xff\xff\xff\x7f", 1, id="length-past-end"),
    pytest.param(_stream(NOTE) + _attribute(7, 0x00018010, b"x\0"), 1, id="unknown-level"),
    pytest.param(
        _stream(NOTE, _attachment("a.exe", EXE, struct.pack("<HHI", 0x0BAD, 0x3001, 0))),
        2, id="unknown-property-type",
    ),
    pytest.param(
        _stream(_attachment("a", EXE, struct.pack("<HHII", 0x1F, 0x3707, 1, 0xFFFFFFF0))),
        1, id="string-past-end",
    ),
    pytest.param(
        _stream(_attachment(None, None, struct.pack("<HHI", 0x1003, 0x3001, 0x40000000))),
        1, id="huge-value-count",
    ),
    pytest.param(b"not a TNEF stream at all", 0, id="declared-but-not-tnef"),
    pytest.param(SIGNATURE, 0, id="signature-only"),
]


@pytest.mark.parametrize(("tnef", "listed"), BROKEN)
def test_a_broken_stream_is_flagged_and_held_not_a_crash(tnef: bytes, listed: int) -> None:
    facts = parse_message(_mail(tnef), ENV)
    assert {"unreadable_tnef", "malformed"} <= facts.flags
    assert "parser_error" not in facts.flags
    assert len(facts.parts) == 3 + listed  # what was read before the break is listed
    verdict = evaluate(load_policy_set([INBOUND]), facts)
    assert isinstance(verdict.decision, Reject | Quarantine)
    assert verdict.rules[0] in ("hold-broken-mime", "block-executables")


def test_a_member_is_stripped_alone_and_its_carrier_whole() -> None:
    raw = _mail(_stream(NOTE, INVOICE))
    strip_exe = policy("rules:\n  - name: s\n    when: {attachment: {filename: ['*.exe']}}\n"
                       "    then: strip_attachment\n")
    assert [c.filename for c in evaluate_message(strip_exe, raw, ENV).changes] == ["INVOIC~1.EXE"]
    strip_dat = policy("rules:\n  - name: s\n    when: {attachment: {filename: ['*.dat']}}\n"
                       "    then: strip_attachment\n")
    over = policy("limits:\n  max_attachment_bytes: 100\n")
    for strip_carrier in (strip_dat, over):
        stripped = evaluate_message(strip_carrier, raw, ENV)
        assert [change.filename for change in stripped.changes] == ["winmail.dat"]


def test_members_count_against_the_part_limits() -> None:
    raw = _mail(_stream(*[NOTE] * 5))
    capped = parse_message(raw, ENV, max_parts=5)
    assert len(capped.parts) == 5 and "too_many_parts" in capped.flags
    shallow = parse_message(raw, ENV, max_depth=1)
    assert "too_deep" in shallow.flags and not any(p.uuencoded for p in shallow.parts)
    nested = _stream(NOTE)
    for _ in range(10):
        nested = _stream(_attachment(None, None, _message_object(nested)))
    deep = parse_message(_mail(nested), ENV, max_depth=6)
    assert "too_deep" in deep.flags and max(p.depth for p in deep.parts) == 6


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_after_the_signature_never_raise(tail: bytes) -> None:
    listing = Reader().read(memoryview(SIGNATURE + tail), 1000)
    assert len(listing.attachments) <= 1000


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_a_valid_stream_overwritten_anywhere_never_raises(at: int, junk: bytes) -> None:
    good = _stream(NOTE, INVOICE, _attachment(None, None, _message_object(_stream(NOTE))))
    at %= len(good)
    facts = parse_message(_mail(good[:at] + junk + good[at + len(junk) :]), ENV)
    assert "parser_error" not in facts.flags
