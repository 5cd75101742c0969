"""Uuencoded and yEncoded files in plain text, found as Thunderbird finds them
(MimeUntypedText).

A uuencoded block starts at a line ``begin`` + three or four octal digits +
the file name, and ends at a line starting with ``e`` + ``nd`` in any case; a
yEnc block starts at ``=ybegin ... name=NAME`` and ends at ``=yend``; either
ends where the next block or the text ends. Only begin and end lines are
searched for (regular expressions with a literal prefix, each byte looked at
about once) and only the first lines of each block are decoded, for its magic
bytes.
"""

from __future__ import annotations

import binascii
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from postwarden_policies.headers import line_end

_BEGIN = (
    rb"(begin [0-7]{3,4} [ \t]*(?P<uu>[^\r\n]*)"
    rb"|=ybegin [^\r\n]*?name=(?P<yenc>[^\r\n]*))"
)
_FIRST_LINE = re.compile(_BEGIN)
_LATER_LINE = re.compile(rb"\n" + _BEGIN)
_END = {"uu": re.compile(rb"\ne[nN][dD]"), "yenc": re.compile(rb"\n=yend")}


@dataclass(frozen=True, slots=True)
class Block:
    start: int  # the begin line
    data_start: int  # the first encoded line
    end: int  # after the end line, or where the block is cut off
    name: str  # as written on the begin line ("" for none)
    size: int  # decoded size, about (from the length of the encoded lines)
    head: bytes  # the first decoded bytes, as far as the lines decode
    encoding: str  # "x-uuencode" or "x-yenc"


def _begin_lines(text: bytes, start: int, end: int) -> Iterator[re.Match[bytes]]:
    first = _FIRST_LINE.match(text, start, end)
    return itertools.chain([first] if first else [], _LATER_LINE.finditer(text, start, end))


def blocks(text: bytes, start: int, end: int, limit: int) -> tuple[list[Block], bool]:
    """Up to ``limit`` blocks in ``text[start:end]``, and whether there are more."""
    lines = list(itertools.islice(_begin_lines(text, start, end), limit + 1))
    stops = [line.start(1) for line in lines[1:]] + [end]
    found = [_block(text, line, stop) for line, stop in zip(lines[:limit], stops, strict=False)]
    return found, len(lines) > limit


def _block(text: bytes, begin: re.Match[bytes], stop: int) -> Block:
    kind = "uu" if begin.group("uu") is not None else "yenc"
    data_start = line_end(text, begin.end(1), stop)
    close = _END[kind].search(text, begin.end(1), stop)
    data_end = close.start() + 1 if close else stop
    lines = text.count(b"\n", data_start, data_end)
    encoded = data_end - data_start
    return Block(
        start=begin.start(1),
        data_start=data_start,
        end=line_end(text, data_end, stop) if close else stop,
        name=begin.group(kind).strip().decode("utf-8", "replace"),
        # uu: a length character and 4 characters per 3 bytes a line; yEnc: a byte
        # a character, but for a few escapes; both a line break a line.
        size=max(0, (encoded - 2 * lines) * 3 // 4 if kind == "uu" else encoded - 2 * lines),
        head=(_uu_head if kind == "uu" else _yenc_head)(text, data_start, data_end),
        encoding="x-uuencode" if kind == "uu" else "x-yenc",
    )


def _uu_head(text: bytes, start: int, end: int, want: int = 192) -> bytes:
    """The first ``want`` bytes (about) the uuencoded lines ``text[start:end]`` decode to."""
    data = b""
    for line in text[start : min(end, start + want * 2)].splitlines():
        if len(data) >= want:
            break
        try:
            data += binascii.a2b_uu(line)
        except binascii.Error:
            break
    return data


def _yenc_head(text: bytes, start: int, end: int, want: int = 192) -> bytes:
    """The first ``want`` bytes (about) the yEnc lines ``text[start:end]`` decode to:
    each byte less 42, after ``=`` less 64 more; ``=ypart`` lines carry no data."""
    lines = text[start : min(end, start + want * 2)].splitlines()
    encoded = b"".join(line for line in lines if not line.startswith(b"=ypart"))
    data = bytearray()
    escaped = False
    for byte in encoded[: want * 2]:
        if byte == 0x3D and not escaped:
            escaped = True
            continue
        data.append((byte - (106 if escaped else 42)) % 256)
        escaped = False
    return bytes(data[:want])
