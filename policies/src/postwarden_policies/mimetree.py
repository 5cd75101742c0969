"""The MIME entity tree, walked from bytes: each entity's headers, the body parts
between its boundary delimiters, the message inside a message/rfc822 part.

It never builds Python ``email`` objects and never decodes whole attachments:
boundaries are found with ``bytes.find``, sizes are counted from the encoded
text, detected types come from the first decoded bytes. Parts are numbered
depth first; ``path`` is "" for the top-level entity, "1", "1.2", ... below it,
and the message inside a ``message/rfc822`` part at path P has path "P.1".
What it finds wrong goes into the flags of :mod:`postwarden_policies.mimeflags`.

Some parts carry a MIME entity encoded, which readers decode and show: an S/MIME
``application/pkcs7-mime`` part whose content is signed data (by its DER,
whatever its ``smime-type`` says), in the clear in that DER, and a base64 or
quoted-printable ``message/global`` part (RFC 6532 3.5 allows the encoding, and
a 7-bit path needs it) or ``message/rfc822`` part (RFC 2046 5.2.1 forbids it, flagged
``encoded_message``, but senders write it and readers open it). Decoded, within the
bytes searched in all, the entity is walked like the message inside a message/rfc822
part, path "P.1" (or next after the files a TNEF stream in the part lists: a
message/global may hold one). Its parts count against the limits like any; they are
``in_decoded`` (with the kind of carrier): their offsets are the outermost carrier's
body, whose encoded bytes cannot be rewritten piecewise (:mod:`.rewrite` rewrites an
encoded message whole). Those in signed data are signed (``in_signed``).
Signed data cut short or malformed is flagged ``unreadable_smime`` and what was
read is listed; broken base64 is flagged ``bad_base64``, as in any part, and
what decodes is read. Enveloped (encrypted) data is left opaque.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from postwarden_policies import cms, entityheaders, magic, tnefparts, transfer, uuencode
from postwarden_policies.facts import DecodedKind, Header, MimePart
from postwarden_policies.headers import (
    MAX_FIELD_OCTETS,
    MAX_FIELDS,
    line_end,
    parameter_list,
    parse_header_section,
)
from postwarden_policies.partlist import PartList
from postwarden_policies.textparts import TextReader

# S/MIME: signed or encrypted as a whole, in one opaque part. Multipart structures
# count only when well formed (Parser._signed).
OPAQUE_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
# multipart/signed protocols (RFC 3156, RFC 8551) and the kind of signature each is.
_SIGNATURES = {
    "application/pgp-signature": "pgp",
    "application/pkcs7-signature": "smime",
    "application/x-pkcs7-signature": "smime",
}
# The parts of a PGP/MIME multipart/encrypted, in order (RFC 3156 section 4).
_PGP_ENCRYPTED = ("application/pgp-encrypted", "application/octet-stream")
# Types whose body is a message, read as one: message/news too, which Thunderbird shows
# as it shows message/rfc822 (its HTML inline), though RFC 5537 retired it.
MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})
# How a MIME entity starts: a header field's name and colon, or the empty line of no
# header at all. A signed PDF ("%PDF-") or XML ("<?xml ...") file does not.
_MIME_START = re.compile(rb"[!-9;-~]+[ \t]*:|\r?\n")
_SIGNED_FILE = b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment\r\n\r\n"
_ENCODED = frozenset({"base64", "quoted-printable"})


def decoded_kind(
    content_type: str, transfer_encoding: str, detected_type: str | None
) -> DecodedKind | None:
    """What a part of this type, encoding and detected type may carry encoded, to be
    listed below it. Signed data by its content alone, whatever the part's type says:
    a reader opens an octet-stream ``smime.p7m``, or a part with no type, as S/MIME
    (Thunderbird by the file name), and enveloped data is typed alike."""
    if detected_type == magic.SIGNED_DATA:
        return "signed_data"
    if content_type in MESSAGE_TYPES and transfer_encoding in _ENCODED:
        return "encoded_message"
    return None


def decoded_content(kind: DecodedKind, body: bytes, cte: str) -> tuple[bytes, bool] | None:
    """The entity a ``kind`` carrier's ``body`` holds, decoded, and whether it was read to
    its end; None when it holds none (no signed data, a detached signature). Signed
    data that is no MIME entity (a signed file: CAdES ``fattura.xml.p7m``,
    ``doc.pdf.p7m``) is that file, an attachment of no declared type."""
    data = transfer.decode(body, cte)
    if kind == "encoded_message":
        return data, True
    found = cms.signed_content(data)
    if found is None:
        return None
    content = found.content
    if content and not _MIME_START.match(content):
        content = _SIGNED_FILE + content
    return content, found.complete


@dataclass(frozen=True, slots=True)
class _Decoded:
    """The entity a part carries encoded, decoded: the bytes its entities lie in."""

    data: bytes
    span: tuple[int, int]  # the body of the outermost part that carries it, in the message
    kind: DecodedKind  # of the part that carries it


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
    decoded: _Decoded | None = None  # the range is in it, not in the message


# A delimiter line as it was found: where it starts, whether it is the close delimiter,
# and where it ends (before its line break).
Delimiter = tuple[int, bool, int]
_NOT_BLANK = re.compile(rb"[^ \t]")


def _delimiter_lines(raw: bytes, start: int, end: int, boundary: bytes) -> Iterator[Delimiter]:
    """Each delimiter line of ``boundary`` in ``raw[start:end]``, in order (RFC 2046
    5.1.1): at the start of a line (after LF or a lone CR, which readers take for a
    line end too), ``--`` and the boundary, ``--`` for the close delimiter,
    then only spaces to the line end. A longer boundary that merely
    starts like ours does not count.

    :func:`_find` looks for the delimiter, and each place it is found is checked
    (:func:`_delimiter_at`, no regular expression: each message has boundaries of its
    own, and compiling one took 0.1 ms). Real mail has next to no such place that is
    not a delimiter line; after :data:`_MISSES` of them, regular expressions with a
    literal prefix search the rest, so a line that only looks like a delimiter costs
    no Python step: multiparts nested with boundaries that prefix each other made each
    level step through every such line of the levels below.
    """
    delimiter = b"--" + boundary
    pos, misses = start, 0
    while misses < _MISSES:
        found = _find(raw, delimiter, pos, end)
        if found < 0:
            return
        pos = found + 1
        after = _delimiter_at(raw, found + len(delimiter), end)
        if after is None or (found != start and raw[found - 1] not in b"\r\n"):
            misses += 1
            continue
        yield found, *after
    line = b"--" + re.escape(boundary) + rb"(--)?[ \t]*(?=[\r\n]|\Z)"
    after_break = (re.compile(br + line).finditer(raw, pos - 1, end) for br in (b"\n", b"\r"))
    for match in heapq.merge(*after_break, key=_line_start):
        yield _line_start(match), match.group(1) is not None, match.end()


def _delimiter_at(raw: bytes, pos: int, end: int) -> tuple[bool, int] | None:
    """After a delimiter found at ``pos``: whether it is the close delimiter and where its
    line ends, before the line break; None when more than spaces follow it there."""
    closing = raw.startswith(b"--", pos, end)
    after = _NOT_BLANK.search(raw, pos + 2 if closing else pos, end)
    if after is None:  # blanks to the end
        return closing, end
    return (closing, after.start()) if after[0] in (b"\r", b"\n") else None


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


def _line_start(match: re.Match[bytes]) -> int:
    """Where a delimiter line starts (a match after a line break starts with it)."""
    return match.start() + (match.group(0)[:1] in b"\r\n")


_MISSES = 64  # places that hold a delimiter but are no delimiter line, before regexes take over
# Bytes searched for delimiter lines in all, as a multiple of the message's size
# (plus a floor for small ones): each multipart searches its own body, so nested
# ones search the same bytes again, level after level. Real mail nests a few
# levels; a hundred levels over 25 MB would be seconds of searching. Each body
# decoded (signed data, message/global) counts too: each level of it costs a few bytes.
_SEARCH_FACTOR = 16
_SEARCH_FLOOR = 16 * 1024 * 1024


class Parser:
    """One message's walk: the parts, flags and text found, shared with the
    readers of text (:class:`TextReader`) and TNEF (:mod:`~postwarden_policies.tnefparts`)."""

    def __init__(
        self, raw: bytes, max_parts: int, max_depth: int, read_decoded: bool,
        binhex: uuencode.Budget,
    ) -> None:
        self.message = raw
        self.raw = raw  # the bytes of the entity visited: the message or decoded content
        self.read_decoded = read_decoded
        self.max_depth = max_depth
        self.flags: set[str] = set()
        self.parts: list[MimePart] = []
        self.listing = PartList(raw, self.flags, max_parts, max_depth, self.parts)
        self.text = TextReader(self.listing, binhex)
        self.search_left = _SEARCH_FACTOR * len(raw) + _SEARCH_FLOOR
        self.fields_left = MAX_FIELDS  # header fields, of every section (headers.py)
        self.octets_left = MAX_FIELD_OCTETS  # and their octets

    def run(self) -> tuple[tuple[Header, ...], int]:
        """Walk the whole tree; returns the top-level headers and body offset."""
        stack = [_Entity(0, len(self.raw), 0, None, "", False, "text/plain")]
        top: tuple[Header, ...] = ()
        body_offset = 0
        while stack:
            if not self.listing.room():
                self.flags.add("too_many_parts")
                break
            entity = stack.pop()
            headers, body_start, children = self._visit(entity)
            if entity.parent is None:
                top, body_offset = headers, body_start
            stack.extend(reversed(children))
        return top, body_offset

    def _header_section(self, entity: _Entity) -> tuple[tuple[Header, ...], int]:
        """The entity's headers and where its body starts, what is wrong with them flagged."""
        section = parse_header_section(self.raw, entity.start, entity.end, self.flags,
                                       limit=self.fields_left, octets=self.octets_left)
        self.fields_left -= len(section.headers)
        self.octets_left -= section.body_start - entity.start
        if section.eight_bit:
            self.flags.add("eight_bit_headers")
        if section.bare_cr:
            self.flags.add("bare_cr")
        if entity.parent is None and not section.headers:
            self.flags.add("no_headers")
        elif section.separator_missing:
            self.flags.add("missing_header_separator")
        return section.headers, section.body_start

    def _visit(self, entity: _Entity) -> tuple[tuple[Header, ...], int, list[_Entity]]:
        flags = self.flags
        inside = entity.decoded
        self.raw = self.listing.raw = self.message if inside is None else inside.data
        headers, body_start = self._header_section(entity)
        types = entityheaders.header_copies(headers, "content-type", flags)
        main, ctype_params, params = parameter_list(next(iter(types), ""), flags)
        ctype = entityheaders.media_type(main, entity.default_type, flags)
        entityheaders.flag_conflicting(ctype_params, flags)
        encodings = entityheaders.header_copies(headers, "content-transfer-encoding", flags)
        cte = (next(iter(encodings), "") or "7bit").strip().lower()
        if cte not in transfer.KNOWN_ENCODINGS:
            flags.add("unknown_transfer_encoding")
        disp, filenames = entityheaders.disposition(headers, ctype_params, types[1:], flags)
        boundary = entityheaders.boundary(ctype, params, flags)
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
                    _Entity(start, end, entity.depth + 1, index, path, in_signed, default, inside)
                )
        elif ctype == "message/partial":  # a fragment: only the whole, reassembled, reads
            flags.add("partial_message")
        elif ctype in MESSAGE_TYPES and cte not in _ENCODED:
            path = f"{entity.path}.1" if entity.path else "1"
            inner = _Entity(
                body_start, entity.end, entity.depth + 1, index, path, in_signed,
                "text/plain", inside,
            )
            children.append(inner)
        # The encoded bytes of the part (an encoded message's too) are what is measured.
        leaf = not is_multipart and (ctype not in MESSAGE_TYPES or cte in _ENCODED)
        decoded_size, detected = self._measure(body_start, entity.end, cte) if leaf else (0, None)
        if leaf and ctype in MESSAGE_TYPES and ctype != "message/global" and cte in _ENCODED:
            flags.add("encoded_message")  # which RFC 2046 5.2.1 forbids; read all the same
        if (leaf and self.read_decoded
              and (kind := decoded_kind(ctype, cte, detected)) is not None):
            children += self._decoded(entity, index, body_start, cte, kind)
        if children and not descend:
            flags.add("too_deep")
            children = []
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
        children = self._embedded(part, params, children if leaf else [], children)
        if inside is not None:
            self._in_carrier(index, inside)
        return headers, body_start, children

    def _embedded(self, part: MimePart, params: dict[str, str], carried: list[_Entity],
                  children: list[_Entity]) -> list[_Entity]:
        """List the files in ``part``'s own bytes (uuencoded in its text, in a TNEF
        stream); ``children`` as they are to be walked. ``carried``: the entity it carries
        encoded, if any (a leaf's only child), which is read instead of its text, as
        readers show it (a signature's DER read as text listed the files uuencoded in
        there once more), and whose path comes after those of the files listed."""
        if not carried:
            self.text.read(part, params)
        tnefparts.list_members(self.listing, part)
        files = len(self.parts) - part.index - 1
        if not (carried and files):
            return children
        path = f"{part.path}.{files + 1}" if part.path else str(files + 1)
        return [replace(carried[0], path=path)]

    def _in_carrier(self, index: int, inside: _Decoded) -> None:
        """Give the part at ``index``, read in decoded content, and the files listed below
        it the offsets of the body that carries them in the message."""
        start, end = inside.span
        for listed in range(index, len(self.parts)):
            self.parts[listed] = replace(
                self.parts[listed], header_start=start, body_start=start, body_end=end,
                in_decoded=inside.kind,
            )

    def _decoded(
        self, carrier: _Entity, index: int, start: int, cte: str, kind: DecodedKind
    ) -> list[_Entity]:
        """The MIME entity the part ``carrier`` (listed at ``index``, its body from
        ``start``) carries encoded, if any; decoded within the bytes that may still be
        searched."""
        end = carrier.end
        self.search_left -= end - start
        if self.search_left < 0:
            self.flags.add("too_deep")  # nested past what may be searched: not read
            return []
        found = decoded_content(kind, self.raw[start:end], cte)
        if found is None:
            return []
        content, complete = found
        if not complete:
            self.flags.add("unreadable_smime")
        if not content:
            return []
        outer = carrier.decoded
        inside = _Decoded(content, (start, end) if outer is None else outer.span, kind)
        path = f"{carrier.path}.1" if carrier.path else "1"
        signed = kind == "signed_data" or carrier.in_signed
        root = _Entity(0, len(content), carrier.depth + 1, index, path, signed, "text/plain",
                       inside)
        return [root]

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
        return ctype in OPAQUE_TYPES

    def _part_type(self, bounds: tuple[int, int]) -> str:
        """The declared type of the body part at ``bounds``, as written (no recovery)."""
        headers = parse_header_section(self.raw, *bounds, set(), limit=self.fields_left,
                                       octets=self.octets_left).headers
        return parameter_list(entityheaders.first_value(headers, "content-type") or "", set())[0]

    def _split(self, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
        """Byte ranges of the body parts between delimiter lines (RFC 2046 5.1.1).

        Only as many as may still be listed, and one more (at least three, so a
        signature's "exactly two parts" is still judged right): past that, the
        rest is not read (``too_many_parts``). A megabyte of delimiter lines would
        otherwise cost a hundred megabytes of ranges never visited. None once the
        bodies searched add up to more than ``_SEARCH_FACTOR`` times the message
        (``too_deep``).
        """
        self.search_left -= end - start
        if self.search_left < 0:
            self.flags.add("too_deep")  # nested past what may be searched: not split
            return []
        raw = self.raw
        most = max(3, self.listing.room() + 1)
        ranges: list[tuple[int, int]] = []
        part_start = -1
        closed = False
        for found, is_close, line_stop in _delimiter_lines(raw, start, end, boundary):
            stop = line_end(raw, line_stop, end)
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
                if len(ranges) >= most:
                    self.flags.add("too_many_parts")
                    return ranges
            if is_close:
                closed = True
                if found == part_start and raw[stop:end].strip():
                    # No line break of its own before it (RFC 2046): Python's email
                    # package reads it as text of the part, and what follows as parts.
                    self.flags.add("missing_end_boundary")
                break
            part_start = stop
        if part_start < 0:
            self.flags.add("missing_boundary")
        elif not closed:
            self.flags.add("missing_end_boundary")
            ranges.append((part_start, end))
        return ranges

    def _measure(self, start: int, end: int, cte: str) -> tuple[int, str | None]:
        exact = True
        if cte == "base64":
            size, exact = transfer.base64_size(self.raw, start, end)
            if not exact:
                self.flags.add("bad_base64")
        elif cte == "quoted-printable":
            size = transfer.qp_size(self.raw, start, end)  # at least the decoded size
        else:
            size = end - start
        head = transfer.decode_head(self.raw, start, end, cte)
        if head is None:
            self.flags.add("padded_encoding")
            return size, None
        return size, magic.detect(head, self._reader(start, end, cte, size, exact))

    def _reader(self, start: int, end: int, cte: str, size: int, exact: bool) -> magic.Reader:
        """Reads a part's decoded bytes where a mark lies past its head, decoding no
        more than up to it; padding that hides one is flagged as one hiding a head."""
        def read(offset: int, length: int) -> bytes:
            if max(offset + length, -offset) > size:
                return b""
            found = transfer.decode_at(self.raw, start, end, cte, offset=offset, length=length,
                                       size=size if exact else None)
            if found is None:
                self.flags.add("padded_encoding")
                return b""
            return found
        return read

