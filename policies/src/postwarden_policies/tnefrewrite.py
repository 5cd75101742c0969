"""Replacing attachments inside a TNEF stream (``winmail.dat``) by notices.

An attachment is the run of level-2 attributes from its ``attAttachRendData``
to the end of its last attribute (:class:`postwarden_policies.tnef.Attachment`),
its MAPI properties (``attAttachment``) and its bytes included, so they go with
it. No attribute of the stream counts the attachments (MS-OXTNEF), so removing
a run needs no other change. Each run is replaced by a small text file, the
notice, in the same rendering position: Outlook shows the files of the TNEF as
the message's attachments (never the ``winmail.dat``), so the notice appears
where the file was, with its own name, on the one reader that hides the
carrier. Every other byte is copied as it was, checksums included; the notice's
attributes carry their own.

The new stream is read back: it must be readable and list the same attachments
with the same names, type and bytes, each replaced one as its notice.
Anything else raises :class:`UnsafeTnef` and nothing may be applied.

Exceptions::

    Exception
     └── UnsafeTnef
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from postwarden_policies import tnef

__all__ = ["NOTICE_NAME", "UnsafeTnef", "attachments", "replace_attachments"]

NOTICE_NAME = "attachment-removed.txt"
_FILE = 1  # attAttachRendData's AttachType of a file (afByValue as PR_ATTACH_METHOD)
_NOT_RENDERED = 0xFFFFFFFF  # a rendering position: not placed in the message text
# The notice's MAPI properties (tag = id << 16 | type).
_LONG = 0x0003
_ATTACH_METHOD = 0x3705
_RENDERING_POSITION = 0x370B
_LONG_FILENAME = 0x3707


class UnsafeTnef(Exception):
    """The stream cannot be rewritten so that it reads as intended."""


def attachments(stream: bytes) -> list[tnef.Attachment]:
    """Every attachment of ``stream``; raises :class:`UnsafeTnef` if it is unreadable."""
    listing = tnef.Reader().read(memoryview(stream), len(stream))
    if not listing.readable:
        raise UnsafeTnef("the TNEF stream is unreadable")
    return listing.attachments


def replace_attachments(stream: bytes, notices: Mapping[int, bytes]) -> bytes:
    """``stream`` with its attachments numbered (from 0) in ``notices`` each replaced by a
    text file holding that notice."""
    found = attachments(stream)
    pieces: list[bytes] = []
    pos = 0
    for number in sorted(notices):
        replaced = found[number]
        _check_run(stream, replaced)
        notice = _notice(notices[number], _position(stream, replaced))
        pieces += (stream[pos : replaced.start], notice)
        pos = replaced.end
    pieces.append(stream[pos:])
    new = b"".join(pieces)
    _check(found, notices, attachments(new))
    return new


def _check_run(stream: bytes, attachment: tnef.Attachment) -> None:
    """Raise unless the run holds attachment attributes only: a message attribute
    written between them (out of the specified order) would go with it."""
    pos = attachment.start
    while pos < attachment.end:
        if stream[pos] != tnef.LEVEL_ATTACHMENT:
            raise UnsafeTnef("a TNEF message attribute lies among an attachment's")
        pos += 11 + _length(stream, pos)  # level, id, length, the value and its checksum


def _position(stream: bytes, attachment: tnef.Attachment) -> int:
    """Where the attachment is rendered in the message text, as the value of its
    attAttachRendData (its first attribute) says: an attachment type, the position."""
    value = stream[attachment.start + 9 : attachment.start + 9 + _length(stream, attachment.start)]
    return int.from_bytes(value[2:6], "little") if len(value) >= 6 else _NOT_RENDERED


def _length(stream: bytes, pos: int) -> int:
    """The length of the value of the attribute at ``pos`` (after its level and id)."""
    return int.from_bytes(stream[pos + 5 : pos + 9], "little")


def _attribute(ident: int, value: bytes) -> bytes:
    checksum = sum(value) & 0xFFFF
    return (
        struct.pack("<BII", tnef.LEVEL_ATTACHMENT, ident, len(value))
        + value
        + struct.pack("<H", checksum)
    )


def _string8(prop: int, text: str) -> bytes:
    value = text.encode("ascii") + b"\0"
    return struct.pack("<HHII", tnef.STRING8, prop, 1, len(value)) + value + bytes(-len(value) % 4)


def _long(prop: int, value: int) -> bytes:
    return struct.pack("<HHI", _LONG, prop, value)


def _notice(text: bytes, position: int) -> bytes:
    """The attributes of a text file named :data:`NOTICE_NAME` holding ``text``."""
    properties = (
        _long(_ATTACH_METHOD, _FILE),
        _long(_RENDERING_POSITION, position),
        _string8(_LONG_FILENAME, NOTICE_NAME),
        _string8(tnef.MIME_TAG, "text/plain"),
    )
    return b"".join(
        (
            _attribute(tnef.REND_DATA, struct.pack("<HIHHI", _FILE, position, 0, 0, 0)),
            _attribute(tnef.TITLE, NOTICE_NAME.encode("ascii") + b"\0"),
            _attribute(tnef.DATA, text),
            _attribute(tnef.PROPERTIES, struct.pack("<I", len(properties)) + b"".join(properties)),
        )
    )


def _listed(attachment: tnef.Attachment) -> tuple[list[str], str | None, bytes]:
    return attachment.names, attachment.content_type, bytes(attachment.data)


def _check(
    before: list[tnef.Attachment], notices: Mapping[int, bytes], after: list[tnef.Attachment]
) -> None:
    expected = [
        ([NOTICE_NAME, NOTICE_NAME], "text/plain", notices[number])
        if number in notices
        else _listed(attachment)
        for number, attachment in enumerate(before)
    ]
    if [_listed(attachment) for attachment in after] != expected:
        raise UnsafeTnef("the rewritten TNEF stream does not read as intended")
