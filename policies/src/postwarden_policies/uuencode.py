"""Uuencoded, yEncoded and BinHex files in plain text, found as Thunderbird finds
them (MimeUntypedText).

A uuencoded block starts at a line ``begin`` + three or four octal digits +
the file name, and ends at a line starting with ``e`` + ``nd`` in any case; a
yEnc block starts at ``=ybegin ... name=NAME`` and ends at ``=yend``; a
BinHex 4.0 block starts at the line ``(This file must be converted with
BinHex 4.0)`` and ends with the first line neither empty nor 64 characters
long (its data lines are 64). Any block ends where the next block or the text
ends. Only begin and end lines are searched for (regular expressions with a
literal prefix, each byte looked at about once) and only the first lines of
each block are decoded, for its magic bytes (and a BinHex file's name, which
lies inside its data).
"""

from __future__ import annotations

import binascii
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from postwarden_policies import magic
from postwarden_policies.headers import line_end

_BEGIN = (
    rb"(begin [0-7]{3,4} [ \t]*(?P<uu>[^\r\n]*)"
    rb"|=ybegin [^\r\n]*?name=(?P<yenc>[^\r\n]*)"
    rb"|\(This file must be converted with BinHex 4\.0\)(?P<binhex>[ \t]*)(?=[\r\n]|\Z))"
)
_FIRST_LINE = re.compile(_BEGIN)
_LATER_LINE = re.compile(rb"\n" + _BEGIN)
_END = {
    "uu": re.compile(rb"\ne[nN][dD]"),
    "yenc": re.compile(rb"\n=yend"),
    "binhex": re.compile(rb"\n(?!(?:[^\r\n]{64})?\r?(?:\n|\Z))"),
}
_ENCODINGS = {"uu": "x-uuencode", "yenc": "x-yenc", "binhex": "x-binhex"}
# The type Thunderbird gives the made-up part (it guesses no type from the name).
_TYPES = {"binhex": "application/mac-binhex40"}
# BinHex 4.0: six bits a character, then run-length coding (0x90 = repeat).
_HQX_DIGITS = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_HQX_VALUE = {char: value for value, char in enumerate(_HQX_DIGITS)}
_HQX_RUN = 0x90


@dataclass(frozen=True, slots=True)
class Block:
    start: int  # the begin line
    data_start: int  # the first encoded line
    end: int  # after the end line, or where the block is cut off
    name: str  # as written on the begin line ("" for none)
    size: int  # decoded size, about (from the length of the encoded lines)
    head: bytes  # the first decoded bytes, as far as the lines decode
    encoding: str  # "x-uuencode", "x-yenc" or "x-binhex"
    content_type: str


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
    kind = next(kind for kind in _ENCODINGS if begin.group(kind) is not None)
    data_start = line_end(text, begin.end(1), stop)
    close = _END[kind].search(text, begin.end(1), stop)
    data_end = close.start() + 1 if close else stop
    lines = text.count(b"\n", data_start, data_end)
    characters = data_end - data_start - 2 * lines
    name = begin.group(kind).strip().decode("utf-8", "replace")
    if kind == "uu":
        head = _uu_head(text, data_start, data_end)
        size = characters * 3 // 4  # a length character and 4 characters per 3 bytes
    elif kind == "yenc":
        head = _yenc_head(text, data_start, data_end)
        size = characters  # a byte a character, but for a few escapes
    else:
        name, head = _binhex_head(text, data_start, data_end)
        size = characters * 3 // 4  # before run-length decoding
    return Block(
        start=begin.start(1),
        data_start=data_start,
        end=line_end(text, data_end, stop) if close else stop,
        name=name,
        size=max(0, size),
        head=head,
        encoding=_ENCODINGS[kind],
        content_type=_TYPES.get(kind, "application/octet-stream"),
    )


def _uu_head(text: bytes, start: int, end: int, want: int = magic.HEAD_BYTES) -> bytes:
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


def _yenc_head(text: bytes, start: int, end: int, want: int = magic.HEAD_BYTES) -> bytes:
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


def _binhex_head(
    text: bytes, start: int, end: int, want: int = magic.HEAD_BYTES
) -> tuple[str, bytes]:
    """The file name and the first ``want`` bytes (about) of the data fork the BinHex
    lines ``text[start:end]`` decode to (("", b"") when they do not).

    The data runs from a ``:`` to the next ``:``; decoded, it starts with the
    name's length and the name, then 21 bytes (version, type, creator, flags,
    fork lengths, checksum) before the data fork.
    """
    encoded = text[start : min(end, start + (want + 100) * 2)]
    colon = encoded.find(b":")
    if colon < 0:
        return "", b""
    decoded = _rle_decode(_six_bits(encoded[colon + 1 :]))
    if not decoded:
        return "", b""
    name_end = 1 + decoded[0]
    name = decoded[1:name_end].decode("mac-roman", "replace")
    return name, decoded[name_end + 21 : name_end + 21 + want]


def _six_bits(encoded: bytes) -> bytes:
    """Six bits a character, line breaks skipped, up to the closing ``:`` or a foreign byte."""
    out = bytearray()
    bits = count = 0
    for char in encoded:
        if char in b"\r\n\t ":
            continue
        value = _HQX_VALUE.get(char)
        if value is None:
            break
        bits = (bits << 6 | value) & 0xFFFFFF
        count += 6
        if count >= 8:
            count -= 8
            out.append(bits >> count & 0xFF)
    return bytes(out)


def _rle_decode(data: bytes) -> bytes:
    """0x90 n repeats the previous byte n - 1 more times; 0x90 0 is 0x90 itself."""
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == _HQX_RUN and index + 1 < len(data):
            count = data[index + 1]
            index += 2
            if count == 0:
                out.append(_HQX_RUN)
            elif out:
                out += out[-1:] * (count - 1)
            continue
        out.append(byte)
        index += 1
    return bytes(out)
