"""Detected types from the first bytes."""

from __future__ import annotations

import struct

import pytest

from postwarden_policies.magic import HEAD_BYTES, detect


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
    ],
)
def test_detect(head: bytes, expected: str | None) -> None:
    assert detect(head) == expected


def test_only_the_head_counts_however_much_the_caller_passes() -> None:
    # The milter's parser decodes HEAD_BYTES of a part; the send API holds the whole
    # file. An ODF media type past the head must read the same to both.
    odf = _zip(b"mimetype", b"application/vnd.oasis.opendocument.text", extra=bytes(200))
    assert detect(odf) == detect(odf[:HEAD_BYTES]) == "application/vnd.oasis.opendocument"
