"""What readers show of a text part: its text for body rules, and the files
uuencoded, yEncoded or BinHexed in it.

Body rules read ``MessageFacts.text``: the decoded text of every part readers
show as text (text/plain, HTML, and an inline text part of another type without
a file name), up to ``TEXT_BUDGET`` characters in all; then, where readers show
a part otherwise, its rendering (:mod:`postwarden_policies.bodytext`), worked out
only when a rule needs it (``MessageFacts.renderings``; each never longer than
the text it renders, its compatibility form never twice as long).

Files in plain text (``begin 644 name`` ... ``end``, ``=ybegin ... name=NAME``
... ``=yend``, ``(This file must be converted with BinHex 4.0)`` ..., which
Thunderbird shows as attachments of an untyped or text/plain body) are listed
below their text/plain part (:mod:`postwarden_policies.partlist`): type
application/octet-stream (application/mac-binhex40 for BinHex), the name from
the begin line (also as Thunderbird reads it in a made-up
``filename="..."``; BinHex: the name inside its data), the detected type from
the first lines, decoded, and where its marks lie.
7bit/8bit text is searched in place to its end; base64 or quoted-printable text
is decoded whole and searched to its end: the search is linear (some 5 ms a MB)
and the decoded text no larger than the part, which the message's size limit
bounds. A message whose BinHex files cost their reads more than
one message may spend (``uuencode.Budget``) is flagged ``unscanned_text``: the
files past it are read no further, their type unknown.
"""

from __future__ import annotations

import codecs

from postwarden_policies import bodytext, transfer, uuencode
from postwarden_policies.charsets import (
    decode_as_readers,
    decode_bytes,
    html_charset,
    is_utf16,
    read_as_readers,
)
from postwarden_policies.facts import MimePart
from postwarden_policies.headers import parameter_list
from postwarden_policies.partlist import EmbeddedFile, PartList

# Characters of decoded text (and its renderings) kept for body regexes: bounds
# memory and time; past it, ``text_truncated``.
TEXT_BUDGET = 4_000_000
_ENCODED = ("base64", "quoted-printable")
# Byte order marks, and the codec that reads text by each.
_MARKS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
          (codecs.BOM_UTF16_BE, "utf-16"))


def embedded_names(name: str, flags: set[str]) -> list[tuple[str, str]]:
    """The name parameters of a file in plain text named ``name`` on its begin line:
    Thunderbird names it in a made-up 'Content-Disposition: inline; filename="NAME"'."""
    return [*parameter_list(f'inline; filename="{name}"', flags)[1], ("filename", name)]


def is_body_text(part: MimePart) -> bool:
    """Whether readers show the part as message text: text/plain and HTML, and an
    inline text part of another type (text/enriched, an unknown subtype) without a name."""
    return (
        part.content_type == "text/plain"
        or part.is_html
        or (part.content_type.startswith("text/") and not part.is_attachment)
    )


class TextReader:
    """The message text gathered part by part, within ``TEXT_BUDGET``."""

    def __init__(self, listing: PartList, binhex: uuencode.Budget) -> None:
        self.listing = listing
        self.texts: list[str] = []
        self.renderable: list[bodytext.Source] = []
        self.text_left = TEXT_BUDGET
        self.binhex_left = binhex  # shared by the message's BinHex reads

    def read(self, part: MimePart, params: dict[str, str]) -> None:
        """Read a text part (anything else is left alone).

        A base64 or quoted-printable part that both readings take whole (the usual
        case) is decoded once for both.
        """
        if not is_body_text(part):
            return  # an attachment: read only where a rule asks (magic bytes, size)
        whole = None
        searched = part.content_type == "text/plain"
        size = part.body_end - part.body_start
        if part.transfer_encoding in _ENCODED and (searched or size <= self.text_left * 3):
            whole = transfer.decode(self.listing.raw[part.body_start : part.body_end],
                                    part.transfer_encoding, keep_padding=True)
        if searched:
            self._find_uuencoded(part, whole)
        # Body text keeps at most text_left characters: a longer part's is read from the
        # prefix that can hold them, not from the whole part decoded.
        self._collect_text(part, params, whole if size <= self.text_left * 3 else None)

    def _find_uuencoded(self, carrier: MimePart, whole: bytes | None) -> None:
        """List the files uuencoded in a text/plain part as attachments below it."""
        if whole is not None:
            text, start, end = whole, 0, len(whole)
        else:  # 7bit/8bit: searched in place
            text, start, end = self.listing.raw, carrier.body_start, carrier.body_end
        found, more = uuencode.blocks(text, start, end, self.listing.room(), self.binhex_left)
        in_place = text is self.listing.raw  # block offsets are offsets into the message
        files = [self._uuencoded_file(carrier, block, in_place) for block in found]
        if self.listing.add_embedded(carrier, files, more):  # their marks read there
            self.listing.flags.add("uuencoded")
        if self.binhex_left.spent:
            self.listing.flags.add("unscanned_text")

    def _uuencoded_file(
        self, carrier: MimePart, block: uuencode.Block, in_place: bool
    ) -> EmbeddedFile:
        """A uuencoded file; its offsets are the carrier's body unless in place."""
        if in_place:
            span = (block.start, block.data_start, block.end)
        else:
            span = (carrier.body_start, carrier.body_start, carrier.body_end)
        return EmbeddedFile(
            names=embedded_names(block.name, self.listing.flags),
            content_type=block.content_type,
            encoding=block.encoding,
            disposition="inline",
            span=span,
            encoded_size=block.end - block.start,
            decoded_size=block.size,
            head=block.head,
            read=block.read,
        )

    def _collect_text(self, part: MimePart, params: dict[str, str], whole: bytes | None) -> None:
        """Keep the text of a part readers show as text and, where readers show it
        otherwise (HTML, format=flowed), what to render it from, within ``TEXT_BUDGET``."""
        flags = self.listing.flags
        if self.text_left <= 0:
            if part.body_end > part.body_start:
                flags.add("text_truncated")
            return
        # Encoded text is at most ~3 bytes per decoded character (QP escapes).
        stop = part.body_end if whole is not None else min(
            part.body_end, part.body_start + self.text_left * 3)
        if stop < part.body_end:
            flags.add("text_truncated")
        encoded = self.listing.raw[part.body_start : stop]
        cte = part.transfer_encoding
        data = whole if whole is not None else transfer.decode(encoded, cte, keep_padding=True)
        charset = params.get("charset")
        if part.is_html:
            charset = html_charset(charset, data)
        if not read_as_readers(charset, data):
            flags.add("unshared_charset")
        text = self._keep(decode_as_readers(data, charset, flags))
        # Rendered if a rule asks: any text part may read otherwise than as written (at
        # least, it may hold characters readers draw as nothing).
        self.renderable.append((part, params, text))
        for reading in _other_readings(data, charset, cte, text, flags):
            self.renderable.append((part, params, self._keep(reading)))
        if cte == "quoted-printable" and transfer.qp_padded(encoded):
            # As RFC 2045 readers show it too (Dovecot, Roundcube): a soft break with
            # padding after its "=" joins a word Thunderbird shows split.
            self._keep(decode_as_readers(transfer.decode(encoded, cte), charset, flags))

    def _keep(self, text: str) -> str:
        """Add ``text`` to the body text, as much as the budget still allows."""
        kept = text[: self.text_left]
        if len(kept) < len(text):
            self.listing.flags.add("text_truncated")
        self.texts.append(kept)
        self.text_left -= len(kept)
        return kept


def _other_readings(data: bytes, charset: str | None, cte: str, text: str,
                    flags: set[str]) -> list[str]:
    """How readers may show what was read as ``text``, where that differs.

    By its byte order mark, whatever its label says: browsers, and the webmail that
    shows it, follow the mark (WHATWG's decode), where the label read Latin letters
    and NULs (UTF-16), or mojibake (UTF-8 under windows-1251, say). And UTF-16 that
    travelled in lines as its sender wrote it (:func:`~.transfer.utf16_as_sent`):
    Postfix shifted the lines after each lone LF byte into CJK text.
    """
    readings = []
    mark = next((codec for bom, codec in _MARKS if data.startswith(bom)), None)
    if mark is not None:
        by_mark = decode_bytes(data, mark, flags)
        if by_mark != text.removeprefix("\ufeff"):
            readings.append(by_mark)
            charset = mark
    if cte not in _ENCODED and is_utf16(charset) and b"\r\n" in data:
        readings.append(decode_as_readers(transfer.utf16_as_sent(data), charset, flags))
    return readings
