"""The content inside an S/MIME signed-data structure (CMS, RFC 5652), read from
DER or BER within bounds and never raising.

Signing is no encryption: an opaque signed message (``application/pkcs7-mime``,
``openssl smime -sign -nodetach``) carries its MIME entity in the clear, as
the ``eContent`` OCTET STRING of ``ContentInfo { signedData, SignedData {
version, digestAlgorithms, encapContentInfo { eContentType, [0] eContent },
... } }``, and mail readers show it. DER gives every length; BER (``openssl
smime -sign -stream``, Outlook) may leave a length open until an
end-of-contents mark and split an OCTET STRING into segments, themselves
split again. The walk is a loop, one element at a time: nesting past
``_NESTING`` levels, more elements than one in ``_BYTES_PER_STEP`` bytes, a
length past the data or a tag out of place ends it, and the content read
before is kept (a reader decoding as it goes shows that much) but not
``complete``. What follows the content (certificates, signatures) is not read:
readers show none of it.
"""

from __future__ import annotations

from dataclasses import dataclass

# The DER of the ContentInfo's contentType for signed data: OBJECT IDENTIFIER
# 1.2.840.113549.1.7.2. Enveloped data (really encrypted) has another.
_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_SEQUENCE, _SET, _INTEGER, _OID, _OCTETS = 0x30, 0x31, 0x02, 0x06, 0x04
_EXPLICIT_0 = 0xA0  # [0] EXPLICIT: the ContentInfo's content, the eContent
_CONSTRUCTED = 0x20
_END_OF_CONTENTS = b"\0\0"
_LENGTH_BYTES = 4  # a long-form length of up to 4 GiB: more than any message
_NESTING = 32  # open constructed elements while skipping or joining segments
# Elements read in all, per byte of the structure and at least: openssl writes
# segments of 4 KiB, BouncyCastle of 1,000 bytes; a hostile structure could hold
# millions of two-byte ones, each a step of this loop.
_BYTES_PER_STEP = 256
_STEPS = 64
HEAD_BYTES = 2 + _LENGTH_BYTES + len(_SIGNED_DATA)  # enough to tell signed data


class _Broken(Exception):
    """The structure is cut short or out of place; reading stops there."""


@dataclass(frozen=True, slots=True)
class SignedContent:
    content: bytes  # the encapsulated content (its MIME entity), as far as it was read
    complete: bool  # read to its end; False: cut short or malformed on the way


def is_signed_data(head: bytes) -> bool:
    """Whether ``head`` (the first ``HEAD_BYTES`` or more) starts a signed-data ContentInfo."""
    try:
        tag, start, _ = _header(memoryview(head), 0, len(head))
    except _Broken:
        return False
    return tag == _SEQUENCE and head[start : start + len(_SIGNED_DATA)] == _SIGNED_DATA


def signed_content(data: bytes) -> SignedContent | None:
    """The content of the signed-data ContentInfo ``data``; None when ``data`` is none
    (enveloped data, anything else) or it carries no content (a detached signature,
    certificates only)."""
    if not is_signed_data(data[:HEAD_BYTES]):
        return None
    walk = _Walk(memoryview(data))
    try:
        if not walk.content() and walk.complete:
            return None
    except _Broken:
        walk.complete = False
    return SignedContent(b"".join(walk.pieces), walk.complete)


def _header(data: memoryview, pos: int, end: int) -> tuple[int, int, int | None]:
    """The tag at ``pos``, where its contents start, and their length (None: open, up to
    an end-of-contents mark). Only low tag numbers occur in what is read here."""
    if pos + 2 > end:
        raise _Broken("cut short")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _Broken("a high tag number")
    pos += 2
    if first < 0x80:
        return tag, pos, first
    if first == 0x80:
        if not tag & _CONSTRUCTED:
            raise _Broken("an open length on a primitive element")
        return tag, pos, None
    count = first & 0x7F
    if count > _LENGTH_BYTES or pos + count > end:
        raise _Broken("a length too long or cut short")
    return tag, pos + count, int.from_bytes(data[pos : pos + count], "big")


class _Walk:
    """One walk down to the eContent, collecting its bytes in ``pieces``."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pieces: list[memoryview] = []
        self.complete = True
        self.steps = _STEPS + len(data) // _BYTES_PER_STEP

    def _step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise _Broken("too many elements")

    def _enter(self, pos: int, end: int, tag: int) -> tuple[int, int | None]:
        """Where the contents of the element ``tag`` at ``pos`` start, and where they
        end (None: open). A length past the data is cut to it, and the read is then
        not complete."""
        found, start, length = _header(self.data, pos, end)
        if found != tag:
            raise _Broken(f"tag {found:#x} where {tag:#x} belongs")
        if length is None:
            return start, None
        if start + length > end:
            self.complete = False
            return start, end
        return start, start + length

    def _skip(self, pos: int, end: int, tag: int) -> int:
        """Where the element ``tag`` at ``pos``, with all it holds, ends."""
        start, stop = self._enter(pos, end, tag)
        if stop is not None:
            return stop
        pos, depth = start, 1  # open elements, each closed by an end-of-contents mark
        while depth:
            self._step()
            if self.data[pos : pos + 2] == _END_OF_CONTENTS:
                pos, depth = pos + 2, depth - 1
                continue
            _, start, length = _header(self.data, pos, end)
            if length is None:
                if depth >= _NESTING:
                    raise _Broken("nested too deep")
                pos, depth = start, depth + 1
            elif start + length > end:
                raise _Broken("a length past the data")
            else:
                pos = start + length
        return pos

    def content(self) -> bool:
        """Read down to the eContent and collect it; False when there is none."""
        data = self.data
        end = len(data)
        pos, _ = self._enter(0, end, _SEQUENCE)
        pos, end = self._within(self._enter(pos + len(_SIGNED_DATA), end, _EXPLICIT_0), end)
        pos, end = self._within(self._enter(pos, end, _SEQUENCE), end)  # SignedData
        pos = self._skip(pos, end, _INTEGER)  # version
        pos = self._skip(pos, end, _SET)  # digestAlgorithms
        pos, stop = self._enter(pos, end, _SEQUENCE)  # encapContentInfo
        pos = self._skip(pos, end, _OID)  # eContentType: whatever it names, read as MIME
        if pos == stop or (stop is None and data[pos : pos + 2] == _END_OF_CONTENTS):
            return False
        pos, end = self._within(self._enter(pos, end, _EXPLICIT_0), end)
        self._octets(pos, end)
        return True

    @staticmethod
    def _within(entered: tuple[int, int | None], end: int) -> tuple[int, int]:
        """An element's contents as a range: an open one runs to the enclosing end."""
        start, stop = entered
        return start, end if stop is None else stop

    def _octets(self, pos: int, end: int) -> None:
        """Collect the OCTET STRING at ``pos``: one primitive string, or a constructed
        one of segments (primitive or constructed again), each in order."""
        data = self.data
        closes: list[int | None] = []  # where each open constructed string ends (None: a mark)
        while True:
            self._step()
            if closes and (
                data[pos : pos + 2] == _END_OF_CONTENTS if closes[-1] is None else pos >= closes[-1]
            ):
                pos += 2 if closes.pop() is None else 0
                if not closes:
                    return
                continue
            limit = next((c for c in reversed(closes) if c is not None), end)
            tag, start, length = _header(data, pos, limit)
            if tag == _OCTETS and length is not None:
                self.pieces.append(data[start : min(start + length, limit)])
                if start + length > limit:
                    raise _Broken("a segment past the data")
                pos = start + length
                if not closes:
                    return
            elif tag == _OCTETS | _CONSTRUCTED:
                if len(closes) >= _NESTING:
                    raise _Broken("segments nested too deep")
                if length is not None and start + length > limit:
                    self.complete = False
                    length = limit - start
                closes.append(None if length is None else start + length)
                pos = start
            else:
                raise _Broken(f"tag {tag:#x} inside an OCTET STRING")
