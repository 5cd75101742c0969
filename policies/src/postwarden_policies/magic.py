"""The detected type of content, from its first bytes only.

``detect(head)`` looks at the first :data:`HEAD_BYTES` decoded bytes of a part
and names what the content really is, whatever the sender declared. ``None``
means unknown. ZIP archives are refined into their common families when the
first member's name says so (OOXML, ODF, Java). Content whose first bytes say
nothing is looked at where a few formats put their mark further in
(:data:`MARKS`), when the caller can read there.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from postwarden_policies import cms

# Enough for every signature below and a ZIP's first member name. The milter's
# parser decodes this many bytes of a part; detect() cuts what it is given to
# as many, so the send API, which holds the whole file, reads it alike.
HEAD_BYTES = 192
ISO9660 = "application/x-iso9660-image"
VHD = "application/x-vhd"

_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "application/x-dosexec"),
    (b"\x7fELF", "application/x-executable"),
    (b"\xfe\xed\xfa\xce", "application/x-mach-binary"),
    (b"\xfe\xed\xfa\xcf", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"%PDF-", "application/pdf"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"\x1f\x8b", "application/gzip"),
    (b"MSCF\x00\x00\x00\x00", "application/vnd.ms-cab-compressed"),
    (b"L\x00\x00\x00\x01\x14\x02\x00", "application/x-ms-shortcut"),
    (b"{\\rtf", "text/rtf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"#!", "text/x-shellscript"),
    (b"\x78\x9f\x3e\x22", "application/vnd.ms-tnef"),  # winmail.dat
    # Windows opens these with a double click into something that runs what they hold.
    (b"vhdxfile", "application/x-vhdx"),  # its file type identifier
    (b"conectix", VHD),  # a dynamic VHD's copy of its footer
    (bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3"), "application/onenote"),  # format GUID
    (b"ITSF\x03\x00\x00\x00", "application/vnd.ms-htmlhelp"),  # .chm
)
# Marks past the head, at an offset (negative: from the end): an ISO 9660 image's first
# volume descriptor, at sector 16 (a type byte, then "CD001"), after a system area of
# anything; a fixed VHD's footer, its last 512 bytes (a dynamic one's copy starts it).
MARKS: tuple[tuple[int, bytes, str], ...] = (
    (0x8001, b"CD001", ISO9660),
    (-512, b"conectix", VHD),
)
# The decoded bytes at an offset (negative: from the end), this many of them; fewer
# where the content is shorter.
Reader = Callable[[int, int], bytes]
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<svg")
_OOXML = "application/vnd.openxmlformats-officedocument"
SIGNED_DATA = "application/pkcs7-mime"


def _zip_family(head: bytes) -> str:
    """Name the archive from its first local file header, when it is there."""
    if not head.startswith(b"PK\x03\x04") or len(head) < 30:
        return "application/zip"
    (name_len,) = struct.unpack_from("<H", head, 26)
    name = head[30 : 30 + name_len]
    if name == b"mimetype":
        # ODF stores its media type uncompressed right after the name.
        (extra_len,) = struct.unpack_from("<H", head, 28)
        media = head[30 + name_len + extra_len :].split(b"PK", 1)[0]
        if media.startswith(b"application/vnd.oasis.opendocument"):
            return media.decode("ascii", "replace")
        return "application/vnd.oasis.opendocument"
    if name == b"[Content_Types].xml" or name.startswith((b"_rels/", b"word/", b"xl/", b"ppt/")):
        return _OOXML
    if name.startswith(b"META-INF/"):
        return "application/java-archive"
    return "application/zip"


def detect(head: bytes, read: Reader | None = None) -> str | None:
    """The detected media type of content starting with ``head``, or None; ``read``
    reads its :data:`MARKS` when its first bytes name nothing."""
    found = _detect_head(head[:HEAD_BYTES])
    if found is not None or read is None:
        return found
    return next((media_type for offset, mark, media_type in MARKS
                 if read(offset, len(mark)) == mark), None)


def reader(content: bytes | memoryview) -> Reader:
    """Reads content held whole (a memoryview is not copied but where read)."""
    def read(offset: int, length: int) -> bytes:
        start = offset if offset >= 0 else len(content) + offset
        return bytes(content[start : start + length]) if start >= 0 else b""
    return read


def _detect_head(head: bytes) -> str | None:
    if head.startswith(_ZIP_SIGNATURES):
        return _zip_family(head)
    if head.startswith(b"\xca\xfe\xba\xbf"):  # fat Mach-O with 64-bit offsets
        return "application/x-mach-binary"
    if head.startswith(b"\xca\xfe\xba\xbe") and len(head) >= 8:
        # Java classes and fat Mach-O binaries share this magic; a fat binary
        # holds a handful of architectures where a class file has its version.
        (count,) = struct.unpack_from(">I", head, 4)
        return "application/x-mach-binary" if count < 40 else "application/java-vm"
    for prefix, media_type in _PREFIXES:
        if head.startswith(prefix):
            return media_type
    if cms.is_signed_data(head):  # S/MIME signed data, whatever the part is called
        return SIGNED_DATA
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(_HTML_STARTS):
        return "text/html"
    return None
