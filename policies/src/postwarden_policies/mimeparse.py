"""A byte-level MIME parser: raw message bytes to :class:`MessageFacts`.

It never builds Python ``email`` objects and never decodes whole attachments:
boundaries are found with ``bytes.find``, sizes are counted from the encoded
text, detected types come from the first decoded bytes. Parts are numbered
depth first; ``path`` is "" for the top-level entity, "1", "1.2", ... below it,
and the message inside a ``message/rfc822`` part at path P has path "P.1".

Files uuencoded, yEncoded or BinHexed in plain text (``begin 644 name`` ...
``end``, ``=ybegin ... name=NAME`` ... ``=yend``, ``(This file must be
converted with BinHex 4.0)`` ..., which Thunderbird shows as attachments of an
untyped or text/plain body) are listed as attachments below their text/plain
part: paths "P.1", "P.2", ..., type application/octet-stream
(application/mac-binhex40 for BinHex), the name from the begin line (also as
Thunderbird reads it in a made-up ``filename="..."``; BinHex: the name inside
its data), the detected type from the first lines, decoded, and
``MimePart.uuencoded`` set. They count against
``max_parts`` and ``max_depth`` like parts. Being no MIME entities, they
cannot be stripped or sanitized on their own: a rewrite that would change one
fails (see :mod:`postwarden_policies.rewrite`) and the engine quarantines
the message. 7bit/8bit text is searched in place to its end; base64 or
quoted-printable text is decoded and searched through its first ``UU_SCAN``
encoded bytes, and a longer part is flagged ``unscanned_text``.

Body rules read ``MessageFacts.text``: the decoded text of every part readers
show as text (text/plain, HTML, and an inline text part of another type without
a file name), up to ``TEXT_BUDGET`` characters in all; then, where readers show
a part otherwise, its rendering (:mod:`postwarden_policies.bodytext`), worked out
only when a rule needs it (``MessageFacts.renderings``; never longer than the
text it renders, so within the budget twice over).

It never raises. What it found wrong is reported in ``MessageFacts.flags``:

=========================  ================================================
``malformed``              set together with every flag marked (m) below
``no_headers``             (m) the message has no header section at all
``missing_header_separator``  (m) headers end at a non-header line, no blank line
``eight_bit_headers``      a header holds raw 8-bit bytes (SMTPUTF8 or junk)
``duplicate_mime_header``  (m) Content-Type/-Transfer-Encoding/-Disposition twice
                           in one entity (the first one is used)
``duplicate_header``       (m) the message has two From or two Subject headers:
                           rules read the first, some readers show the last
``malformed_content_type``  (m) a Content-Type whose type mail readers must recover
                           (a comment, '?' or ',' in it) or cannot read at all
``conflicting_parameter``  (m) Content-Type gives its boundary or charset twice with
                           different values (plain and RFC 2231 forms, repeats): the
                           one Thunderbird picks (the RFC 2231 form) is used
``bare_cr``                (m) a header or delimiter line ends with a lone CR (read as
                           a line end, as Python's email package and Thunderbird do)
``missing_boundary``       (m) multipart without a boundary parameter, or with
                           no delimiter line in its body
``missing_end_boundary``   (m) a multipart's close delimiter never comes
``bad_base64``             (m) base64 text with foreign characters, a bad length,
                           or more text after its ``=`` padding
``padded_encoding``        (m) a base64 or quoted-printable part whose first bytes
                           hide behind more whitespace or soft line breaks than
                           ``transfer.HEAD_SCAN`` (its detected type is unknown)
``unknown_transfer_encoding``  (m) a transfer encoding outside RFC 2045
``encoded_message``        (m) a message/rfc822 part that is base64 or QP
                           encoded (not looked into)
``unscanned_text``         (m) a base64 or quoted-printable text/plain part longer
                           than ``UU_SCAN``: the rest was not searched for
                           uuencoded files
``text_truncated``         the message text is longer than ``TEXT_BUDGET``: body
                           rules did not see the rest (not malformed: a long
                           log pasted inline is well-formed mail)
``uuencoded``              a text/plain part carries uuencoded, yEncoded or BinHex files (listed as
                           attachments that cannot be stripped on their own)
``ambiguous_from``         (m) the From header reads as another domain to a strict
                           RFC 5322 parse than to a plain search for an address
                           (a comment or a quoted name holding ``<x@other>``, ...),
                           or the strict parse fails on it (``From: Mallory <m@``)
``bidi_override``          (m) a file name holds a bidi override (U+202D, U+202E) that
                           makes readers show its letters in another order
                           ("invoice<U+202E>fdp.exe" shows as "invoiceexe.pdf")
``ambiguous_filename``     a part names its file in more than one way (filename,
                           name, RFC 2231 forms, repeats, Content-Name and
                           X-Sun-Data-Name headers) and the names differ;
                           attachment rules test every one of them
``malformed_encoded_word``  an RFC 2047 word that does not decode
``unknown_charset``        a charset neither Python nor readers (WHATWG labels) know
                           (read as UTF-8)
``unshared_charset``       a text part in a charset mail readers may decode
                           otherwise than Python (see ``headers.read_as_readers``):
                           body rules may not see the text the reader sees
``empty_body``             the message body is empty
``too_deep``               nesting beyond ``max_depth``: not descended further
``too_many_parts``         more than ``max_parts`` entities (containers and the
                           top-level entity count): the rest is not listed
``parser_error``           (m) an internal error; facts are incomplete
=========================  ================================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from postwarden_policies import bodytext, entityheaders, magic, transfer, uuencode
from postwarden_policies.facts import Envelope, Header, MessageFacts, MimePart
from postwarden_policies.headers import (
    decode_as_readers,
    line_end,
    parameter_list,
    parse_header_section,
    read_as_readers,
)

log = logging.getLogger(__name__)

# Characters of decoded text (and its renderings) kept for body regexes: bounds
# memory and time; past it, ``text_truncated``.
TEXT_BUDGET = 4_000_000
UU_SCAN = 8 * 1024 * 1024  # encoded bytes of a base64/QP text part searched for uuencode
_ENCODED = ("base64", "quoted-printable")
# Headers RFC 5322 allows once that rules read (from, from_domain, subject).
_READ_ONCE = ("from", "subject")
# Every flag the parser sets (the table above): a policy's ``flag:`` may name only these.
FLAGS = frozenset({
    "ambiguous_filename", "ambiguous_from", "bad_base64", "bare_cr", "bidi_override",
    "conflicting_parameter", "duplicate_header", "duplicate_mime_header", "eight_bit_headers",
    "empty_body", "encoded_message", "malformed", "malformed_content_type",
    "malformed_encoded_word", "missing_boundary", "missing_end_boundary",
    "missing_header_separator", "no_headers", "padded_encoding", "parser_error", "too_deep",
    "text_truncated", "too_many_parts", "unknown_charset", "unknown_transfer_encoding",
    "unscanned_text", "unshared_charset", "uuencoded",
})
# What a body that never came makes the parser say: untrue of the message.
_NO_BODY = frozenset({"empty_body", "missing_boundary", "missing_end_boundary"})
_MALFORMED = frozenset(
    {
        "no_headers",
        "missing_header_separator",
        "duplicate_mime_header",
        "duplicate_header",
        "bidi_override",
        "malformed_content_type",
        "conflicting_parameter",
        "bare_cr",
        "missing_boundary",
        "missing_end_boundary",
        "bad_base64",
        "padded_encoding",
        "unknown_transfer_encoding",
        "encoded_message",
        "unscanned_text",
        "ambiguous_from",
        "parser_error",
    }
)
# S/MIME: signed or encrypted as a whole, in one opaque part. Multipart structures
# count only when well formed (_Parser._signed).
_OPAQUE_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
# multipart/signed protocols (RFC 3156, RFC 8551) and the kind of signature each is.
_SIGNATURES = {
    "application/pgp-signature": "pgp",
    "application/pkcs7-signature": "smime",
    "application/x-pkcs7-signature": "smime",
}
# The parts of a PGP/MIME multipart/encrypted, in order (RFC 3156 section 4).
_PGP_ENCRYPTED = ("application/pgp-encrypted", "application/octet-stream")
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_UNIQUE_HEADERS = ("content-type", "content-transfer-encoding", "content-disposition")


@dataclass(frozen=True, slots=True)
class _Entity:
    """A work item: an entity's byte range and where it sits in the tree."""

    start: int
    end: int
    depth: int
    parent: int | None
    path: str
    in_signed: bool
    default_type: str


def _find(raw: bytes, delimiter: bytes, pos: int, end: int) -> int:
    """``raw.find(delimiter, pos, end)``, faster over encoded attachments.

    Base64 has no "-", so hopping between dashes (memchr) skips a megabyte in
    microseconds; text full of dashes falls back to the plain search.
    """
    for _ in range(64):
        dash = raw.find(b"-", pos, end)
        if dash < 0 or raw.startswith(delimiter, dash, end):
            return dash
        pos = dash + 1
    return raw.find(delimiter, pos, end)


def _newline(raw: bytes) -> bytes:
    """The message's own line ending, judged by its first line; CRLF by default."""
    at = raw.find(b"\n")
    return b"\n" if at == 0 or (at > 0 and raw[at - 1] != 0x0D) else b"\r\n"


class _Parser:
    def __init__(self, raw: bytes, max_parts: int, max_depth: int) -> None:
        self.raw = raw
        self.max_parts = max_parts
        self.max_depth = max_depth
        self.flags: set[str] = set()
        self.parts: list[MimePart] = []
        self.texts: list[str] = []
        self.renderable: list[bodytext.Source] = []
        self.text_left = TEXT_BUDGET

    def run(self) -> tuple[tuple[Header, ...], int]:
        """Walk the whole tree; returns the top-level headers and body offset."""
        stack = [_Entity(0, len(self.raw), 0, None, "", False, "text/plain")]
        top: tuple[Header, ...] = ()
        body_offset = 0
        while stack:
            if len(self.parts) >= self.max_parts:
                self.flags.add("too_many_parts")
                break
            entity = stack.pop()
            headers, body_start, children = self._visit(entity)
            if entity.parent is None:
                top, body_offset = headers, body_start
            stack.extend(reversed(children))
        return top, body_offset

    def _visit(self, entity: _Entity) -> tuple[tuple[Header, ...], int, list[_Entity]]:
        raw, flags = self.raw, self.flags
        section = parse_header_section(raw, entity.start, entity.end, flags)
        headers, body_start = section.headers, section.body_start
        if section.eight_bit:
            flags.add("eight_bit_headers")
        if section.bare_cr:
            flags.add("bare_cr")
        if entity.parent is None and not headers:
            flags.add("no_headers")
        elif section.separator_missing:
            flags.add("missing_header_separator")
        types = entityheaders.header_copies(headers, "content-type", flags)
        main, ctype_params, params = parameter_list(next(iter(types), ""), flags)
        ctype = entityheaders.media_type(main, entity.default_type, flags)
        entityheaders.flag_conflicting(ctype_params, flags)
        encodings = entityheaders.header_copies(headers, "content-transfer-encoding", flags)
        cte = (next(iter(encodings), "") or "7bit").strip().lower()
        if cte not in transfer.KNOWN_ENCODINGS:
            flags.add("unknown_transfer_encoding")
        disp, filenames = entityheaders.disposition(headers, ctype_params, types[1:], flags)
        boundary = params.get("boundary", "") if ctype.startswith("multipart/") else ""
        if ctype.startswith("multipart/") and not boundary:
            flags.add("missing_boundary")
        is_multipart = bool(boundary)
        ranges: list[tuple[int, int]] = []
        if is_multipart:
            ranges = self._split(body_start, entity.end, boundary.encode("utf-8", "replace"))
        in_signed = entity.in_signed or self._signed(ctype, params, ranges)
        index = len(self.parts)
        children: list[_Entity] = []
        descend = entity.depth < self.max_depth
        if is_multipart:
            default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for number, (start, end) in enumerate(ranges, 1):
                path = f"{entity.path}.{number}" if entity.path else str(number)
                children.append(
                    _Entity(start, end, entity.depth + 1, index, path, in_signed, default)
                )
        elif ctype in _MESSAGE_TYPES:
            if cte in ("base64", "quoted-printable"):
                flags.add("encoded_message")
            else:
                path = f"{entity.path}.1" if entity.path else "1"
                inner = _Entity(
                    body_start, entity.end, entity.depth + 1, index, path, in_signed, "text/plain"
                )
                children.append(inner)
        if children and not descend:
            flags.add("too_deep")
            children = []
        leaf = not is_multipart and ctype not in _MESSAGE_TYPES
        decoded_size, detected = self._measure(body_start, entity.end, cte) if leaf else (0, None)
        part = MimePart(
            index=index,
            path=entity.path,
            depth=entity.depth,
            parent=entity.parent,
            content_type=ctype,
            charset=params.get("charset", "").strip().lower() or None,
            transfer_encoding=cte,
            disposition=disp,
            filename=filenames[0] if filenames else None,
            filenames=filenames,
            is_multipart=is_multipart,
            is_attachment=not is_multipart
            and (
                disp == "attachment"
                or bool(filenames)
                or not ctype.startswith(("text/", "multipart/"))
            ),
            header_start=entity.start,
            body_start=body_start,
            body_end=entity.end,
            encoded_size=entity.end - body_start,
            decoded_size=decoded_size if leaf else entity.end - body_start,
            detected_type=detected,
            in_signed=in_signed,
        )
        self.parts.append(part)
        self._read_text(part, params)
        return headers, body_start, children

    def _signed(self, ctype: str, params: dict[str, str], ranges: list[tuple[int, int]]) -> bool:
        """Whether ``ctype`` starts a signed or encrypted structure, to be left unmodified.

        Thunderbird shows a multipart/signed or multipart/encrypted whose
        protocol is missing or unknown, or whose parts do not fit it, as
        multipart/mixed: such a "signature" or "encryption" must not keep its
        parts from being sanitized or stripped.
        """
        protocol = params.get("protocol", "").strip().lower()
        if ctype == "multipart/signed":
            kind = _SIGNATURES.get(protocol)
            return (
                kind is not None
                and len(ranges) == 2
                and _SIGNATURES.get(self._part_type(ranges[1])) == kind
            )
        if ctype == "multipart/encrypted":
            return (
                protocol == _PGP_ENCRYPTED[0]
                and len(ranges) == 2
                and tuple(map(self._part_type, ranges)) == _PGP_ENCRYPTED
            )
        return ctype in _OPAQUE_TYPES

    def _part_type(self, bounds: tuple[int, int]) -> str:
        """The declared type of the body part at ``bounds``, as written (no recovery)."""
        headers = parse_header_section(self.raw, *bounds, set()).headers
        return parameter_list(entityheaders.first_value(headers, "content-type") or "", set())[0]

    def _split(self, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
        """Byte ranges of the body parts between delimiter lines (RFC 2046 5.1.1)."""
        raw = self.raw
        delimiter = b"--" + boundary
        ranges: list[tuple[int, int]] = []
        part_start = -1
        pos = start
        closed = False
        while (found := _find(raw, delimiter, pos, end)) >= 0:
            pos = found + 1
            if found != start and raw[found - 1] not in b"\r\n":
                continue  # not at the start of a line
            after = found + len(delimiter)
            is_close = raw.startswith(b"--", after, end)
            stop = line_end(raw, after, end)
            if raw[after + 2 * is_close : stop].strip(b" \t\r\n"):
                continue  # a longer boundary that merely starts like ours
            if raw[stop - 1] == 0x0D or (found != start and raw[found - 1] == 0x0D):
                self.flags.add("bare_cr")  # taken for a line end, as readers take it
            if part_start >= 0:
                # The line break before a delimiter belongs to it.
                body_end = found
                if body_end > part_start and raw[body_end - 1] == 0x0A:
                    body_end -= 1
                if body_end > part_start and raw[body_end - 1] == 0x0D:
                    body_end -= 1
                ranges.append((part_start, body_end))
            if is_close:
                closed = True
                break
            part_start = stop
            pos = stop
        if part_start < 0:
            self.flags.add("missing_boundary")
        elif not closed:
            self.flags.add("missing_end_boundary")
            ranges.append((part_start, end))
        return ranges

    def _measure(self, start: int, end: int, cte: str) -> tuple[int, str | None]:
        if cte == "base64":
            size, ok = transfer.base64_size(self.raw, start, end)
            if not ok:
                self.flags.add("bad_base64")
        elif cte == "quoted-printable":
            size = transfer.qp_size(self.raw, start, end)
        else:
            size = end - start
        head = transfer.decode_head(self.raw, start, end, cte)
        if head is None:
            self.flags.add("padded_encoding")
            return size, None
        return size, magic.detect(head)

    def _read_text(self, part: MimePart, params: dict[str, str]) -> None:
        """What readers show of a text part: its text (for body rules), uuencoded files.

        A base64 or quoted-printable part that both readings take whole (the usual
        case) is decoded once for both.
        """
        if not _is_body_text(part):
            return  # an attachment: read only where a rule asks (magic bytes, size)
        whole = None
        size = part.body_end - part.body_start
        if part.transfer_encoding in _ENCODED and size <= min(UU_SCAN, self.text_left * 3):
            whole = transfer.decode(
                self.raw[part.body_start : part.body_end], part.transfer_encoding
            )
        if part.content_type == "text/plain":
            self._find_uuencoded(part, whole)
        self._collect_text(part, params, whole)

    def _find_uuencoded(self, carrier: MimePart, whole: bytes | None) -> None:
        """List the files uuencoded in a text/plain part as attachments below it."""
        if whole is not None:
            text, start, end = whole, 0, len(whole)
        else:
            text, start, end = self._plain_text(carrier)
        found, more = uuencode.blocks(text, start, end, max(0, self.max_parts - len(self.parts)))
        if more:
            self.flags.add("too_many_parts")
        if found and carrier.depth >= self.max_depth:
            self.flags.add("too_deep")
            return
        if found:
            self.flags.add("uuencoded")
        in_place = text is self.raw  # block offsets are offsets into the message
        for number, block in enumerate(found, 1):
            self.parts.append(self._uuencoded_part(carrier, number, block, in_place))

    def _plain_text(self, part: MimePart) -> tuple[bytes, int, int]:
        """A text part's bytes and where they lie: in place, or decoded up to ``UU_SCAN``."""
        if part.transfer_encoding not in _ENCODED:
            return self.raw, part.body_start, part.body_end
        stop = min(part.body_end, part.body_start + UU_SCAN)
        if stop < part.body_end:
            self.flags.add("unscanned_text")
        text = transfer.decode(self.raw[part.body_start : stop], part.transfer_encoding)
        return text, 0, len(text)

    def _uuencoded_part(
        self, carrier: MimePart, number: int, block: uuencode.Block, in_place: bool
    ) -> MimePart:
        """A uuencoded file as an attachment; offsets are the carrier's body unless in place."""
        # Thunderbird names it in a made-up 'Content-Disposition: inline; filename="NAME"'.
        made_up = parameter_list(f'inline; filename="{block.name}"', self.flags)[1]
        filenames = entityheaders.file_names(None, [*made_up, ("filename", block.name)], self.flags)
        return MimePart(
            index=len(self.parts),
            path=f"{carrier.path}.{number}" if carrier.path else str(number),
            depth=carrier.depth + 1,
            parent=carrier.index,
            content_type=block.content_type,
            charset=None,
            transfer_encoding=block.encoding,
            disposition="inline",
            filename=filenames[0] if filenames else None,
            filenames=filenames,
            is_multipart=False,
            is_attachment=True,
            header_start=block.start if in_place else carrier.body_start,
            body_start=block.data_start if in_place else carrier.body_start,
            body_end=block.end if in_place else carrier.body_end,
            encoded_size=block.end - block.start,
            decoded_size=block.size,
            detected_type=magic.detect(block.head),
            in_signed=carrier.in_signed,
            uuencoded=True,
        )

    def _collect_text(self, part: MimePart, params: dict[str, str], whole: bytes | None) -> None:
        """Keep the text of a part readers show as text and, where readers show it
        otherwise (HTML, format=flowed), what to render it from, within ``TEXT_BUDGET``."""
        if self.text_left <= 0:
            if part.body_end > part.body_start:
                self.flags.add("text_truncated")
            return
        if whole is not None:
            data = whole
        else:
            # Encoded text is at most ~3 bytes per decoded character (QP escapes).
            start = part.body_start
            stop = min(part.body_end, start + self.text_left * 3)
            if stop < part.body_end:
                self.flags.add("text_truncated")
            data = transfer.decode(self.raw[start:stop], part.transfer_encoding)
        charset = params.get("charset")
        if not read_as_readers(charset, data):
            self.flags.add("unshared_charset")
        text = self._keep(decode_as_readers(data, charset, self.flags))
        if bodytext.renders(part, params):
            self.renderable.append((part, params, text))  # rendered if a rule asks

    def _keep(self, text: str) -> str:
        """Add ``text`` to the body text, as much as the budget still allows."""
        kept = text[: self.text_left]
        if len(kept) < len(text):
            self.flags.add("text_truncated")
        self.texts.append(kept)
        self.text_left -= len(kept)
        return kept


def _is_body_text(part: MimePart) -> bool:
    """Whether readers show the part as message text: text/plain and HTML, and an
    inline text part of another type (text/enriched, an unknown subtype) without a name."""
    return (
        part.content_type == "text/plain"
        or part.is_html
        or (part.content_type.startswith("text/") and not part.is_attachment)
    )


def parse_message(
    raw: bytes, envelope: Envelope, *, max_parts: int = 1000, max_depth: int = 100,
    header_only: bool = False,
) -> MessageFacts:
    """Facts about ``raw`` (CRLF or LF line ends). Never raises; see the flags above.

    ``header_only``: ``raw`` is the header of a message that ended before its body
    came (a refused or aborted transaction): the flags say nothing of the body.
    """
    parser = _Parser(raw, max_parts, max_depth)
    headers: tuple[Header, ...] = ()
    body_offset = 0
    from_address = None
    try:
        headers, body_offset = parser.run()
        from_address = entityheaders.from_address(headers, parser.flags)
    except Exception:  # the parser must never take the milter down with it
        log.exception("MIME parser failed; facts are incomplete")
        parser.flags.add("parser_error")
    flags = parser.flags
    if body_offset >= len(raw):
        flags.add("empty_body")
    for name in _READ_ONCE:
        entityheaders.header_copies(headers, name, flags, "duplicate_header")
    if header_only:
        flags -= _NO_BODY
    if flags & _MALFORMED:
        flags.add("malformed")
    return MessageFacts(
        envelope=envelope,
        raw=raw,
        body_offset=body_offset,
        headers=headers,
        parts=tuple(parser.parts),
        from_address=from_address,
        subject=entityheaders.first_value(headers, "subject"),
        message_id=(entityheaders.first_value(headers, "message-id") or "").strip() or None,
        size=len(raw),
        flags=frozenset(flags),
        newline=_newline(raw),
        text="\n".join(parser.texts),
        renderings=bodytext.Renderings(parser.renderable),
    )
