"""Detected types from the first bytes."""

from __future__ import annotations

import base64
import binascii
import struct

import pytest

from postwarden_policies import transfer
from postwarden_policies.facts import Envelope
from postwarden_policies.magic import HEAD_BYTES, ISO9660, detect, reader
from postwarden_policies.mimeparse import parse_message

ONENOTE = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3")
# An ISO 9660 image: 32 KiB of system area, then its first volume descriptor.
ISO = bytes(0x8000) + b"\x01CD001\x01" + bytes(2041)


def _zip(name: bytes, data: bytes = b"", extra: bytes = b"") -> bytes:
    header = struct.pack(
        "<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, len(data), len(data), len(name),
        len(extra),
    )
    return header + name + extra + data


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(b"MZ\x90\x00", "application/x-dosexec", id="pe"),
        pytest.param(b"\x7fELF\x02\x01", "application/x-executable", id="elf"),
        pytest.param(b"\xcf\xfa\xed\xfe\x07\x00", "application/x-mach-binary", id="macho-64"),
        pytest.param(b"\xca\xfe\xba\xbf\x00\x00\x00\x02", "application/x-mach-binary",
                     id="macho-fat-64"),
        pytest.param(
            b"\xca\xfe\xba\xbe\x00\x00\x00\x02", "application/x-mach-binary", id="macho-fat"
        ),
        pytest.param(b"\xca\xfe\xba\xbe\x00\x00\x00\x34", "application/java-vm", id="java-class"),
        pytest.param(_zip(b"hello.txt"), "application/zip", id="zip"),
        pytest.param(b"PK\x05\x06" + bytes(18), "application/zip", id="empty-zip"),
        pytest.param(
            _zip(b"[Content_Types].xml"),
            "application/vnd.openxmlformats-officedocument",
            id="ooxml",
        ),
        pytest.param(
            _zip(b"word/document.xml"),
            "application/vnd.openxmlformats-officedocument",
            id="ooxml-word",
        ),
        pytest.param(
            _zip(b"mimetype", b"application/vnd.oasis.opendocument.text"),
            "application/vnd.oasis.opendocument.text",
            id="odf",
        ),
        pytest.param(_zip(b"META-INF/MANIFEST.MF"), "application/java-archive", id="jar"),
        pytest.param(b"%PDF-1.4", "application/pdf", id="pdf"),
        pytest.param(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage", id="ole2"),
        pytest.param(b"Rar!\x1a\x07\x01\x00", "application/vnd.rar", id="rar"),
        pytest.param(b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed", id="7z"),
        pytest.param(b"\x1f\x8b\x08", "application/gzip", id="gzip"),
        pytest.param(b"\x89PNG\r\n\x1a\n", "image/png", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0", "image/jpeg", id="jpeg"),
        pytest.param(b"GIF89a", "image/gif", id="gif"),
        pytest.param(b"#!/bin/sh\n", "text/x-shellscript", id="shebang"),
        pytest.param(b"{\\rtf1\\ansi", "text/rtf", id="rtf"),
        pytest.param(b"\x78\x9f\x3e\x22\x01\x00", "application/vnd.ms-tnef", id="tnef"),
        pytest.param(b"\xef\xbb\xbf  <!DOCTYPE HTML>", "text/html", id="html-bom"),
        pytest.param(b"\r\n<Html><body>", "text/html", id="html"),
        pytest.param(b"hello world", None, id="text"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"PK\x03\x04\x00", "application/zip", id="truncated-zip"),
        pytest.param(ONENOTE + bytes(20), "application/onenote", id="onenote"),
        pytest.param(b"ITSF\x03\x00\x00\x00`\x00", "application/vnd.ms-htmlhelp", id="chm"),
        pytest.param(b"vhdxfile", "application/x-vhdx", id="vhdx"),
        pytest.param(b"conectix\x00\x00\x00\x02", "application/x-vhd", id="vhd-dynamic"),
    ],
)
def test_detect(head: bytes, expected: str | None) -> None:
    assert detect(head) == expected


def test_only_the_head_counts_however_much_the_caller_passes() -> None:
    # The milter's parser decodes HEAD_BYTES of a part; the send API holds the whole
    # file. An ODF media type past the head must read the same to both.
    odf = _zip(b"mimetype", b"application/vnd.oasis.opendocument.text", extra=bytes(200))
    assert detect(odf) == detect(odf[:HEAD_BYTES]) == "application/vnd.oasis.opendocument"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(ISO, "application/x-iso9660-image", id="iso"),
        pytest.param(bytes(4097) + b"conectix" + bytes(504), "application/x-vhd", id="vhd-fixed"),
        pytest.param(ISO[:0x8004], None, id="iso-mark-cut-short"),
        pytest.param(b"conectix" + bytes(505), "application/x-vhd", id="vhd-footer-only"),
        pytest.param(b"MZ" + ISO[2:], "application/x-dosexec", id="first-bytes-first"),
        pytest.param(bytes(500) + b"conectix", None, id="shorter-than-a-footer"),
    ],
)
def test_marks_past_the_head_are_read_when_the_caller_can(
    content: bytes, expected: str | None
) -> None:
    assert detect(content[:HEAD_BYTES], reader(content)) == expected
    assert detect(content[:HEAD_BYTES], reader(memoryview(content))) == expected


def _mailed(content: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        body = base64.encodebytes(content).replace(b"\n", b"\r\n")
    else:
        body = binascii.b2a_qp(content).replace(b"\n", b"\r\n")
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: scan\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: application/pdf; name=scan.pdf\r\n"
            b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body)


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(ISO, "application/x-iso9660-image", id="iso"),
        *(pytest.param(bytes(4096 + pad) + b"conectix" + bytes(504), "application/x-vhd",
                       id=f"vhd-fixed-{pad}") for pad in range(4)),  # every base64 alignment
        pytest.param(ONENOTE + bytes(4000), "application/onenote", id="onenote"),
        pytest.param(bytes(300) + b"conectix" + bytes(300), None, id="no-footer"),
    ],
)
def test_the_parser_detects_a_renamed_disk_image_or_onenote_file(
    content: bytes, expected: str | None, encoding: str
) -> None:
    facts = parse_message(_mailed(content, encoding), Envelope())
    assert [part.detected_type for part in facts.parts] == [expected]
    assert not facts.flags


def test_a_footer_ending_one_long_quoted_printable_line_is_read() -> None:
    # No line break in the last 64 KiB: the suffix decoded starts inside an escape.
    content = bytes(30_000) + b"conectix" + bytes(504)
    body = binascii.b2a_qp(content).replace(b"=\n", b"")
    facts = parse_message(_mailed(b"", "quoted-printable") + body, Envelope())
    assert (facts.parts[0].detected_type, facts.flags) == ("application/x-vhd", frozenset())


def test_the_parser_decodes_no_more_than_up_to_the_marks() -> None:
    # 2 MB of base64 whose first bytes name nothing: the ISO mark and the VHD footer are
    # decoded alone (the text before the mark is only cleaned), not all of it.
    content = bytes(2_000_000)
    facts = parse_message(_mailed(content, "base64"), Envelope())
    assert facts.parts[0].detected_type is None
    decoded: list[int] = []
    real = transfer._decode_run

    def counted(run: bytes) -> bytes:
        decoded.append(len(run))
        return real(run)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer, "_decode_run", counted)
        parse_message(_mailed(content, "base64"), Envelope())
    assert sum(decoded) < 4096


def test_an_iso_mark_hidden_behind_padding_is_flagged_as_a_hidden_head() -> None:
    # Readers skip the blanks; the milter would have to decode megabytes to find it.
    encoded = base64.b64encode(ISO)
    padded = encoded[:1000] + b" " * 200_000 + encoded[1000:]
    message = _mailed(b"", "base64") + padded
    facts = parse_message(message, Envelope())
    assert facts.parts[0].detected_type is None
    assert "padded_encoding" in facts.flags


def test_an_iso_mark_whose_escape_the_decoded_window_cuts_in_two_is_read() -> None:
    # The first window decoded for the mark (twice the bytes wanted) ends in "=3" of the
    # "=31" that is the mark's last byte: it was read as "=", not "1".
    window = 2 * (0x8001 + len(b"CD001"))
    escaped = (window - 2 - len(b"=\r\n=01=43=44=30=30") - 0x8000) // 2
    body = (b"=\r\n" + b"=00" * escaped + b"A" * (0x8000 - escaped) + b"=01=43=44=30=30=31"
            + b"=01" + b"=00" * 100)
    assert body[window - 2 : window + 1] == b"=31"
    facts = parse_message(_mailed(b"", "quoted-printable") + body, Envelope())
    assert (facts.parts[0].detected_type, facts.flags) == (ISO9660, frozenset())


def test_a_head_whose_escape_the_decoded_window_cuts_in_two_is_read_whole() -> None:
    # The first window (twice the bytes wanted) ends in "=4", 192 bytes decoded with it.
    body = b"=41" * 96 + b"B" * 94 + b"=43" + b"D" * 100
    decoded = transfer.decode_head(body, 0, len(body), "quoted-printable")
    assert decoded == (b"A" * 96 + b"B" * 94 + b"CD")
