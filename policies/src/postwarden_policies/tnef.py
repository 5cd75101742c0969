"""The attachments inside a TNEF stream (Outlook's ``winmail.dat``,
``application/ms-tnef``), read within bounds and never raising (MS-OXTNEF).

A stream is a signature, a two-byte key, then attributes: a level byte (1 the
message, 2 an attachment), a 32-bit id, a 32-bit length, that many bytes and a
16-bit checksum (not checked: a wrong one hides nothing). An attachment starts
at ``attAttachRendData``; its names are ``attAttachTitle``, the transport file
name and, in the MAPI properties of ``attAttachment``, the long file name, the
short one and the display name (readers show one or another, so all are
listed); its bytes are ``attAttachData`` or the property ``PR_ATTACH_DATA``.
An attached Outlook message is an object whose bytes, after a 16-byte
interface id, are a TNEF stream of its own (``Attachment.nested``, as is an
attached ``winmail.dat``).

Attributes are told apart by their id, the low half of their 32 bits, as readers
such as tnefparse tell them: the high half, the value's type, can be anything. Reading
stops at the first thing out of place (a length past the end, an unknown property
type, an attachment's attribute before any attachment started, more than ``_STEPS``
attributes and properties): the stream is then not ``readable``, and what was read
before it is still listed (an attAttachRendData of an odd type, unrecognised, would
hide the attachment after it from the rules, not from a reader).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from postwarden_policies import magic

SIGNATURE = b"\x78\x9f\x3e\x22"
LEVEL_ATTACHMENT = 2
REND_DATA = 0x00069002  # starts an attachment
TITLE = 0x00018010
DATA = 0x0006800F
_TRANSPORT_NAME = 0x00069001
PROPERTIES = 0x00069005  # the attachment's MAPI properties
_CODEPAGE = 0x00069007  # of the 8-bit strings (attOemCodepage)
# MAPI property ids of the names and the bytes, and of the declared type.
_NAME_PROPS = frozenset({0x3707, 0x3704, 0x3001})  # long and short file name, display name
_DATA_PROP = 0x3701
MIME_TAG = 0x370E
_OBJECT = 0x000D
STRING8, _UNICODE = 0x001E, 0x001F
# The 8-bit strings' code page when the stream names none: MAPI's GetTnefStreamCodepage
# answers 437 then, so Outlook reads a name so.
DEFAULT_CODEC = "cp437"
_VARIABLE = frozenset({STRING8, _UNICODE, 0x0102, _OBJECT})  # counted, length-prefixed
# Bytes of one value of each fixed-size property type, padded to 4.
_FIXED = {0x0000: 4, 0x0001: 4, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8,
          0x0007: 8, 0x000A: 4, 0x000B: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16}
_MULTIPLE = 0x1000
_ID = 0xFFFF  # an attribute's id; the high half is its type
_MNID_ID, _MNID_STRING = 0, 1  # a named property's kind of name
_IID = 16  # the interface id before an attached message's stream
# Attributes and properties read in all, nested streams included: a real stream
# has a few dozen an attachment; a hostile one could have millions of 11 bytes.
_STEPS = 100_000


class _Unreadable(Exception):
    """Something in the stream is out of place; reading stops there."""


@dataclass(slots=True)
class Attachment:
    names: list[str] = field(default_factory=list)
    content_type: str | None = None  # PR_ATTACH_MIME_TAG, as written
    # Its bytes; an attached message's after the interface id: a TNEF stream.
    data: memoryview = field(default_factory=lambda: memoryview(b""))
    # Where its attributes run in the stream: from its attAttachRendData to the
    # end of its last attribute (a rewrite removes or replaces that run).
    start: int = 0
    end: int = 0

    @property
    def head(self) -> bytes:
        return bytes(self.data[: magic.HEAD_BYTES])

    @property
    def nested(self) -> memoryview | None:
        """The TNEF stream it is (an attached message, a winmail.dat attached), if so."""
        return self.data if bytes(self.data[:4]) == SIGNATURE else None


@dataclass(slots=True)
class Listing:
    """What a stream holds, as far as it was read."""

    attachments: list[Attachment]
    more: bool  # there were more than the limit
    readable: bool


class Reader:
    """Reads TNEF streams, an attached message's within its carrier's budget of
    ``_STEPS`` attributes and properties."""

    def __init__(self) -> None:
        self.steps = _STEPS
        self.codec = DEFAULT_CODEC

    def read(self, data: memoryview, limit: int) -> Listing:
        """Up to ``limit`` attachments of the stream ``data``. Never raises."""
        listing = Listing([], more=False, readable=True)
        try:
            self._read(data, limit, listing)
        except _Unreadable:
            listing.readable = False
        return listing

    def _step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise _Unreadable

    def _read(self, data: memoryview, limit: int, into: Listing) -> None:
        if bytes(data[:4]) != SIGNATURE:
            raise _Unreadable
        pos = _need(data, 4, 2)
        current: Attachment | None = None
        while pos < len(data):
            self._step()
            start = pos
            level, attribute, length = data[pos], _u32(data, pos + 1), _u32(data, pos + 5)
            value = data[pos + 9 : _need(data, pos + 9, length)]
            pos = _need(data, pos + 9 + length, 2)  # and the checksum
            if level not in (1, LEVEL_ATTACHMENT):
                raise _Unreadable
            if level != LEVEL_ATTACHMENT:
                # The message's code page: at level 2 its id is no attribute Outlook
                # reads, and read there an EBCDIC one made the next file's name garbage.
                if attribute & _ID == _CODEPAGE & _ID and length >= 4:
                    self.codec = _codec(_u32(value, 0))
                continue
            if attribute & _ID == REND_DATA & _ID:
                if len(into.attachments) >= limit:
                    into.more = True
                    return
                current = Attachment(start=start)
                into.attachments.append(current)
            elif current is None:  # whose? A reader may take it for an attachment's
                raise _Unreadable
            else:
                self._attribute(current, attribute & _ID, value)
            current.end = pos

    def _attribute(self, attachment: Attachment, attribute_id: int, value: memoryview) -> None:
        if attribute_id in (TITLE & _ID, _TRANSPORT_NAME & _ID):
            attachment.names.append(_text(value, self.codec))
        elif attribute_id == DATA & _ID:
            attachment.data = value
        elif attribute_id == PROPERTIES & _ID:
            self._properties(attachment, value)

    def _properties(self, attachment: Attachment, data: memoryview) -> None:
        """Read a MAPI property list: a count, then each property's type, id (a
        named property's name after it) and value(s)."""
        pos = 4
        for _ in range(_u32(data, 0)):
            self._step()
            kind, prop = _u32(data, pos) & 0xFFFF, _u32(data, pos) >> 16
            pos += 4
            if prop >= 0x8000:  # a GUID, its kind, then a number or a length-prefixed name
                pos = self._property_name(data, pos)
            values, pos = self._values(data, pos, kind)
            codec = "utf-16-le" if kind & ~_MULTIPLE == _UNICODE else self.codec
            texts = [_text(v, codec) for v in values] if kind in (STRING8, _UNICODE) else []
            if prop in _NAME_PROPS:
                attachment.names += texts
            elif prop == MIME_TAG and texts:
                attachment.content_type = texts[0]
            elif prop == _DATA_PROP and values:
                attachment.data = values[0][_IID:] if kind == _OBJECT else values[0]

    @staticmethod
    def _property_name(data: memoryview, pos: int) -> int:
        """Where a named property's value starts, after its name at ``pos``: a GUID and
        the kind of name, then the number (MNID_ID: 4 bytes, which a reader skipping
        none would take for the value, and Outlook's next properties for a value's
        bytes) or the length and the name (MNID_STRING)."""
        pos = _need(data, pos, 20)
        kind = _u32(data, pos - 4)
        if kind == _MNID_ID:
            return _need(data, pos, 4)
        if kind == _MNID_STRING:
            return _need(data, pos + 4, _padded(_u32(data, pos)))
        raise _Unreadable

    def _values(self, data: memoryview, pos: int, kind: int) -> tuple[list[memoryview], int]:
        """The value(s) of one property at ``pos``, and where the next one starts."""
        base = kind & ~_MULTIPLE
        count = 1
        if base in _VARIABLE or kind & _MULTIPLE:
            count, pos = _u32(data, pos), pos + 4
        if base not in _VARIABLE:
            if base not in _FIXED:
                raise _Unreadable
            end = _need(data, pos, count * _FIXED[base])
            return [data[pos:end]], end
        values = []
        for _ in range(count):
            self._step()
            size = _u32(data, pos)
            values.append(data[pos + 4 : _need(data, pos + 4, size)])
            pos = _need(data, pos + 4, _padded(size))
        return values, pos


def _u32(data: memoryview, pos: int) -> int:
    """The little-endian 32-bit number at ``pos``; unreadable past the end."""
    return int.from_bytes(data[pos : _need(data, pos, 4)], "little")


def _need(data: memoryview, pos: int, size: int) -> int:
    """The offset ``size`` bytes after ``pos``; unreadable if that is past the end."""
    if pos + size > len(data):
        raise _Unreadable
    return pos + size


def _padded(size: int) -> int:
    return size + -size % 4


def _codec(codepage: int) -> str:
    try:
        return codecs.lookup(f"cp{codepage}").name
    except LookupError:
        return "cp1252"


def _text(value: memoryview, codec: str) -> str:
    """A name as Outlook reads it: up to its first NUL."""
    return bytes(value).decode(codec, "replace").split("\0", 1)[0].strip()
