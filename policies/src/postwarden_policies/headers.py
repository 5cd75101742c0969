"""Header sections as bytes: splitting, unfolding, RFC 2047 words, RFC 2231 parameters.

Everything here is tolerant: hostile input yields a best-effort value and a
note in the caller's flag set, never an exception. Values keep 8-bit bytes as
surrogate escapes (``raw_value``) and decode to text with replacement
characters (``value``) so they are safe to log and store.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from dataclasses import dataclass
from typing import NamedTuple

from postwarden_policies.charsets import (
    decode_as_readers,
    decode_undeclared,
    read_as_readers,
    readers_only,
)
from postwarden_policies.facts import Header

# A header field name: printable ASCII except colon (RFC 5322 section 2.2).
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
# The encoded text may hold spaces: RFC 2047 forbids them, readers decode them anyway.
ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
# One parameter: name, then a quoted string or a token (lenient about spaces). The
# quoted string's repeats are possessive: sre kept a backtracking point per character
# otherwise (a 2.8 MB name took 500 MB); and runs of plain characters are one repeat,
# not an alternation a character (five times slower: a second for a 20 MB name).
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("[^"\\]*+(?:\\.[^"\\]*+)*+"?|[^;]*)', re.DOTALL)
# Where Python's email package (compat32) ends a parameter: at the first ";" past an
# even number of quotes (an escaped one not counted), so ``"invoice.pdf" x";y.hta"``
# is all one value to it, ``invoice.pdf" x";y.hta``.
_QUOTE_OR_END = re.compile(r'\\"|"|;')
_CONTINUATION = re.compile(r"^(.+?)\*(\d+)(\*?)$")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
LINE_BREAK = re.compile(rb"\r\n?|\n")  # a lone CR too, as readers read one
_TOKEN = re.compile(r"\s*([^\s(]*)")  # spaces, then a value ended by a space or a comment
NAME_PARAMETERS = ("filename", "name")  # parameters that name a part's file
# Header fields read of a message, all its sections together (header_fields); a real
# one has dozens a section. And their octets, about what 10,000 fields of real mail
# hold: Postfix keeps a top-level field within 100 KiB (header_size_limit), but a
# part's header section is body to it, unbounded.
MAX_FIELDS = 10_000
MAX_FIELD_OCTETS = 2 * 1024 * 1024
# An RFC 2231 continuation piece: its number as written, whether it is
# percent-encoded (``name*1*=``), its text.
_Piece = tuple[str, bool, str]


class Field(NamedTuple):
    """A header field as written: its name, its lines (the first after the colon; line
    ends cut off), and whether a lone CR came before it (Header.inline)."""

    name: bytes
    lines: list[bytes]
    inline: bool


@dataclass(frozen=True, slots=True)
class HeaderSection:
    headers: tuple[Header, ...]
    body_start: int  # offset of the first body byte (after the blank line)
    eight_bit: bool  # some header byte was >= 0x80
    separator_missing: bool  # the section ended at a line that is not a header
    bare_cr: bool  # a line ended with a lone CR


def line_end(raw: bytes, pos: int, end: int) -> int:
    """Where the line at ``pos`` ends, after its line break (``end`` if it has none).

    A lone CR ends a line too: Python's email package and Thunderbird read it so.
    """
    match = LINE_BREAK.search(raw, pos, end)
    return end if match is None else match.end()


def header_fields(raw: bytes, start: int, end: int, limit: int = MAX_FIELDS,
                  octets: int = MAX_FIELD_OCTETS,
                  ) -> tuple[list[Field], int, bool, bool]:
    """The fields of the header section in ``raw[start:end]``; where the body starts;
    whether the section ended at a line that is neither a field nor a continuation;
    whether fields past ``limit``, or lines past ``octets``, were left unread.

    The section ends at the first empty line, or (leniently) at that other line: it
    starts the body. Past ``limit`` fields or ``octets`` the rest is not read: each
    field costs some fifty times its bytes once parsed, and a 10 MB section of ``X: y``
    lines took half a gigabyte; a few long fields cost time instead (20 MB of one
    Content-Type's ``; a=b`` took 6 s). :func:`parse_header_section` flags it
    (``too_many_header_fields``), which refuses the message as a structure limit.
    """
    fields: list[Field] = []
    pos = start
    separator_missing = cut = after_cr = False
    while pos < end:
        stop = line_end(raw, pos, end)
        line = raw[pos:stop].rstrip(b"\r\n")
        if not line:
            pos = stop
            break
        if stop - start > octets:
            cut = True
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].lines.append(line)
        elif (match := _FIELD.match(line)) is not None:
            if len(fields) >= limit:
                cut = True
                break
            name = line[: match.end() - 1].rstrip(b" \t")
            fields.append(Field(name, [line[match.end() :]], after_cr))
        else:
            separator_missing = True
            break
        pos = stop
        after_cr = raw[stop - 1 : stop] == b"\r"
    return fields, pos, separator_missing, cut


def parse_header_section(raw: bytes, start: int, end: int, flags: set[str], *,
                         limit: int = MAX_FIELDS, octets: int = MAX_FIELD_OCTETS,
                         ) -> HeaderSection:
    """Parse the header lines of the entity in ``raw[start:end]`` (:func:`header_fields`)."""
    fields, pos, separator_missing, cut = header_fields(raw, start, end, limit, octets)
    if cut:
        flags.add("too_many_header_fields")
    eight_bit = False
    headers = []
    fallback: list[str | None] = []  # the entity's charset, once a value needs it
    for name, lines, inline in fields:
        value = b"".join(lines).strip(b" \t")
        if not value.isascii() or not name.isascii():
            eight_bit = True
        headers.append(
            Header(
                name=name.decode("ascii", "replace"),
                raw_value=value.decode("utf-8", "surrogateescape"),
                value=_field_text(value, fields, fallback, flags),
                folded=len(lines) > 1,
                inline=inline,
            )
        )
    crs = raw.count(b"\r", start, pos)
    bare_cr = crs != raw.count(b"\r\n", start, pos)
    return HeaderSection(tuple(headers), pos, eight_bit, separator_missing, bare_cr)


def _field_text(value: bytes, fields: list[Field], fallback: list[str | None],
                flags: set[str]) -> str:
    """A field's value as text: 8-bit bytes read as readers read them (in the charset
    the first Content-Type among ``fields`` declares, kept in ``fallback`` once looked
    for), encoded words decoded."""
    if value.isascii():
        return decode_words(value.decode("ascii"), flags)
    if not fallback:
        fallback.append(_declared_charset(fields))
    return decode_words(decode_undeclared(value, fallback[0]), flags)


def delivered_values(raw: bytes, name: str) -> list[str]:
    """The values of the top-level ``name`` fields (any case) of the message ``raw``, as
    delivered: the field body unfolded (a fold's line break removed, the blank starting
    its next line kept), without the one blank after the colon that separates name and
    value, nothing else trimmed; as text, as :class:`Header`'s value reads it."""
    fields, _, _, _ = header_fields(raw, 0, len(raw))
    wanted = name.lower()
    fallback: list[str | None] = []
    values: list[str] = []
    for field, lines, _ in fields:
        if field.decode("ascii", "replace").lower() == wanted:
            body = b"".join(lines)
            values.append(_field_text(body[1:] if body[:1] in (b" ", b"\t") else body,
                                      fields, fallback, set()))
    return values


def _declared_charset(fields: list[Field]) -> str | None:
    """The charset parameter of the first Content-Type among ``fields``, if any."""
    for name, lines, _ in fields:
        if name.lower() == b"content-type":
            value = b"".join(lines).decode("ascii", "replace")
            return parameter_list(value, set())[2].get("charset")
    return None


def _word_bytes(match: re.Match[str], flags: set[str]) -> bytes | None:
    """The bytes an encoded word carries; None (flagged) when they do not decode."""
    encoding, payload = match.group(2).lower(), match.group(3)
    data = payload.encode("ascii", "replace")
    try:
        if encoding == "b":
            return binascii.a2b_base64(data + b"===")
        return binascii.a2b_qp(data, header=True)
    except binascii.Error:
        flags.add("malformed_encoded_word")
        return None


def decode_words(value: str, flags: set[str]) -> str:
    """Decode RFC 2047 encoded words as readers do: whitespace between adjacent words
    vanishes, adjacent words in one charset are decoded together, since a
    character may be split between two of them, and a charset label is read as
    body text's is (:func:`decode_as_readers`, flag ``unshared_charset`` where
    :func:`read_as_readers` says readers may read it otherwise)."""
    if "=?" not in value:
        return value
    pieces: list[str] = []
    run_charset: str | None = None  # the charset of the words gathered in run
    run = bytearray()
    pos = 0  # past the last encoded word (0: none yet)
    for match in ENCODED_WORD.finditer(value):
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 section 5 language suffix
        data = _word_bytes(match, flags)
        gap = value[pos : match.start()]
        # Only whitespace between two encoded words vanishes (RFC 2047 section 6.2),
        # not a "?=  =?" of plain text.
        adjacent = pos > 0 and gap.strip() == ""
        joins = (
            adjacent and data is not None
            and run_charset is not None and charset.lower() == run_charset.lower()
        )
        if not joins:
            if run_charset is not None:
                pieces.append(_decode_run(bytes(run), run_charset, flags))
                run_charset, run = None, bytearray()
            if not adjacent:
                pieces.append(gap)
        if data is None:
            pieces.append(match.group(0))
        else:
            run_charset = run_charset or charset
            run += data
        pos = match.end()
    if run_charset is not None:
        pieces.append(_decode_run(bytes(run), run_charset, flags))
    pieces.append(value[pos:])
    return "".join(pieces)


def _decode_run(data: bytes, charset: str, flags: set[str]) -> str:
    """The text of adjacent encoded words in one charset."""
    if not read_as_readers(charset, data) and not readers_only(charset):
        flags.add("unshared_charset")
    return decode_as_readers(data, charset, flags)


def _unquote(value: str) -> str:
    value = value.strip()
    if value.startswith('"'):
        value = value[1:-1] if len(value) > 1 and value.endswith('"') else value[1:]
        return _QUOTED_PAIR.sub(r"\1", value)
    return value


def _decode_2231(value: str, with_charset: bool, flags: set[str]) -> str:
    charset = None
    if with_charset and value.count("'") >= 2:
        charset, _lang, value = value.split("'", 2)
    data = urllib.parse.unquote_to_bytes(value)
    return decode_as_readers(data, charset or "utf-8", flags)


def _parameters(text: str, flags: set[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Every ``; name=value`` in ``text``, and the RFC 2231 value of each name (see below)."""
    found: list[tuple[str, str]] = []
    extended: dict[str, str] = {}
    pieces: dict[str, list[_Piece]] = {}
    text = ";" + text
    for match in _PARAM.finditer(text):
        name = match.group(1).lower()
        raw = match.group(2).strip()
        cont = _CONTINUATION.match(name)
        if cont is not None:
            pieces.setdefault(cont.group(1), []).append(
                (cont.group(2), cont.group(3) == "*", _unquote(raw))
            )
        elif name.endswith("*"):
            found.append((name[:-1], _decode_2231(_unquote(raw), True, flags)))
            extended.setdefault(name[:-1], found[-1][1])
        elif name in NAME_PARAMETERS:
            found.append((name, decode_words(_unquote(raw), flags)))
            found += [(name, decode_words(other, flags))
                      for other in _other_readings(raw, text, match.end())]
        else:  # as written: readers decode encoded words in a file name alone
            found.append((name, _unquote(raw)))
    for name, parts in pieces.items():
        # Readers join malformed continuations differently; a rule must see each
        # reading. Thunderbird's comes first (if it has one): it is the one shown.
        run = _reader_run(parts)
        values = dict.fromkeys([_join(run, flags)] if run else [])
        # Python's compat32 policy joins every piece, sorted by number, then text.
        values.setdefault(_join(sorted(parts, key=lambda p: (int(p[0][:6]), p[2])), flags))
        found += [(name, value) for value in values]
        extended.setdefault(name, next(iter(values)))
    return found, extended


def _other_readings(raw: str, text: str, end: int) -> list[str]:
    """How Python's email package reads a file name value otherwise than a quoted
    string or a token: an unquoted value to its first space, and a quoted one with
    what follows it up to the next ";"."""
    if raw[:1] != '"':
        token = _compat32_token(raw)
        return [token] if token not in ("", raw) else []
    whole = (raw + text[end:_compat32_end(text, end)]).strip()
    if whole == raw:
        return []
    return [whole[1:-1] if len(whole) > 1 and whole.endswith('"') else whole]


def _compat32_token(raw: str) -> str:
    """An unquoted value as Python's email package reads it: spaces and comments before
    it skipped, ended by the next space or comment. A loop, where a regular expression
    repeating a group kept a backtracking point for each comment (130 MB for a 1.8 MB
    field of ``(a)(a)...``; the Python of Debian 12 reads a possessive one wrong)."""
    pos = 0
    while True:
        found = _TOKEN.match(raw, pos)
        assert found is not None  # noqa: S101 - it matches empty text too
        start = found.start(1)
        close = raw.find(")", start)
        if not raw.startswith("(", start) or close < 0 or "(" in raw[start + 1 : close]:
            return found[1]
        pos = close + 1


def _compat32_end(text: str, pos: int) -> int:
    """Where compat32 ends the parameter whose quoted string ends at ``pos`` (an even
    number of quotes so far): at the next ";" that follows an even number more."""
    inside = False
    for found in _QUOTE_OR_END.finditer(text, pos):
        if found[0] == '"':
            inside = not inside
        elif found[0] == ";" and not inside:
            return found.start()
    return len(text)


def _reader_run(parts: list[_Piece]) -> list[_Piece]:
    """The continuation pieces Thunderbird joins: ``*0``, ``*1``, ... in order, up
    to a missing or repeated number. A number with a leading zero or over 999
    counts as missing."""
    by_index: dict[str, list[_Piece]] = {}
    for part in parts:
        by_index.setdefault(part[0], []).append(part)
    run: list[_Piece] = []
    for index in range(1000):
        copies = by_index.get(str(index), [])
        run += copies[:1]
        if len(copies) != 1:
            break
    return run


def _join(parts: list[_Piece], flags: set[str]) -> str:
    # Percent-decode the encoded segments together: a multi-byte character
    # may be split across continuation lines.
    encoded = any(enc for _, enc, _ in parts)
    joined = "".join(
        text if enc or not encoded else urllib.parse.quote(text, safe="'")
        for _, enc, text in parts
    )
    return _decode_2231(joined, True, flags) if encoded else joined


def parameter_list(
    value: str, flags: set[str]
) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """Split ``type/subtype; a=b; ...`` into a lower-case main value and every parameter.

    Parameters come as (lower-case name, decoded value) in order, repeats
    included; RFC 2231 continuations (``name*0*=``, ``name*1=``) are joined,
    decoded with their ``charset'lang'`` prefix and listed last: as Thunderbird
    joins them (up to a missing or repeated number) and, if that differs, all of
    them in order of number. RFC 2047 words in file names (``filename``, ``name``)
    are decoded because common mailers write them that way; in any other value (a
    boundary, a charset) they are text, as readers take them.
    An unquoted file name with a space or comment in it is listed twice: as
    Mozilla reads it (to the ';') and as Python's email package does (to the space).
    Mozilla ends the main value at a comma too: when it has one, the parameters
    after the comma are listed as well (``attachment, filename="a.js"``).
    The third value has one value per name as Thunderbird picks it: the first
    ``name*=``, else the continuations, else the first ``name=``.
    """
    main, _, rest = value.partition(";")
    found, extended = _parameters(rest, flags)
    preferred = first_of_each(found) | extended
    if "," in main:
        after_comma, extended = _parameters(value.partition(",")[2], flags)
        found += after_comma
        preferred = first_of_each(after_comma) | extended
    return main.strip().lower(), found, preferred


def first_of_each(parameters: list[tuple[str, str]]) -> dict[str, str]:
    """One value per name: the first occurrence wins."""
    params: dict[str, str] = {}
    for name, value in parameters:
        params.setdefault(name, value)
    return params
