"""Sanitized HTML within SMTP's line limit, for a part that travels unencoded.

nh3 writes ``<``, ``>`` and ``&`` in text, and ``&`` in attribute values, as
character references, so a line of a 7bit, 8bit or binary part that fit within SMTP's
998 octets (RFC 5322 2.1.1) may not once sanitized. Postfix's SMTP client would
then break it wherever the limit falls (``smtp_line_length_limit``): inside a
tag, an attribute value, a URL. :func:`within_line_limit` breaks such a line
itself, at a space HTML reads as any other whitespace: in text outside the
elements that keep their whitespace, and between a tag's attributes. A line
with no such space stays as it is (:func:`past_line_limit` finds it: the part then
goes quoted-printable, see :mod:`postwarden_policies.partedits`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain

LINE_LIMIT = 998  # octets, without the line end
# Their text shows (or runs) with its line breaks as written.
_KEEPS_WHITESPACE = frozenset("listing plaintext pre script style textarea xmp".split())
# A tag as nh3 writes it: attribute values quoted ('>' may stand in one), or text.
_TOKEN = re.compile(r"""<(/?)([a-zA-Z][^\s/>]*)(?:"[^"]*"|'[^']*'|[^"'>])*>?|[^<]+|<""")
_BARE_SPACE = re.compile(r""""[^"]*"|'[^']*'|( )""")


def past_line_limit(html: str, charset: str, newline: str) -> bool:
    """Whether a line of ``html`` is longer than :data:`LINE_LIMIT` octets in ``charset``."""
    # No charset writes a character in more than 8 octets (iso-2022-jp alternating
    # scripts: 4.5), so shorter lines need no encoding to know they fit.
    return any(len(line) > LINE_LIMIT // 8 and len(line.encode(charset)) > LINE_LIMIT
               for line in html.split(newline))


def within_line_limit(html: str, charset: str, newline: str) -> str:
    """``html`` (encodable in ``charset``, lines ending in ``newline``) with each line
    longer than :data:`LINE_LIMIT` octets broken at spaces where HTML allows it."""
    if not past_line_limit(html, charset, newline):
        return html
    pieces: list[str] = []
    start = 0
    for space in _breaks(html, charset, newline):
        pieces += (html[start:space], newline)
        start = space + 1
    pieces.append(html[start:])
    return "".join(pieces)


def _breaks(html: str, charset: str, newline: str) -> Iterator[int]:
    """The spaces to replace with line ends, in order: in a line past the limit, the
    last that keeps it within, else the first past it."""
    def octets(begin: int, end: int) -> int:
        return len(html[begin:end].encode(charset))

    ends = chain(_find_all(html, newline), [len(html)])  # the text's end ends a line too
    line_end = next(ends)
    start, last, upto_last = 0, -1, 0  # the line's start, its last space so far, octets to it
    for space in chain(_spaces(html), [len(html) + 1]):
        while line_end < space:
            if last >= 0 and upto_last + octets(last, line_end) > LINE_LIMIT:
                yield last
            start, last, upto_last = line_end + len(newline), -1, 0
            line_end = next(ends, len(html) + 1)
        if space > len(html):
            return
        length = upto_last + octets(max(last, start), space)
        if length > LINE_LIMIT and last >= 0:
            yield last
            start = last + 1
            length = octets(start, space)
        last, upto_last = space, length


def _find_all(text: str, sub: str) -> Iterator[int]:
    at = text.find(sub)
    while at >= 0:
        yield at
        at = text.find(sub, at + len(sub))


def _spaces(html: str) -> Iterator[int]:
    """The spaces that may become line ends, in order; never one before a "-" (a
    line of a MIME part must not start with "--", the delimiters' prefix). Where CSS
    may set ``white-space`` (pre, pre-wrap, ...), those in text show as written: only
    the spaces between a tag's attributes may then break."""
    floor = 1 if "white-space" in html.lower() else 0
    keep = floor  # open elements that keep their whitespace (one for all, with CSS's)
    for token in _TOKEN.finditer(html):
        closing, name = token.group(1), token.group(2)
        if name is None:  # text
            if keep:
                continue
            at = token.start()
            while (at := html.find(" ", at, token.end())) >= 0:
                if html[at + 1 : at + 2] != "-":
                    yield at
                at += 1
            continue
        if name.lower() in _KEEPS_WHITESPACE:
            keep = max(floor, keep - 1) if closing else keep + 1
        for space in _BARE_SPACE.finditer(html, token.start(), token.end()):
            if space.group(1) and html[space.end(1) : space.end(1) + 1] != "-":
                yield space.start(1)
