"""Uuencoded, yEncoded and BinHex files in plain text, found as Thunderbird finds
them (MimeUntypedText).

A uuencoded block starts at a line ``begin`` + three or four octal digits + the
file name, and ends at a line starting with ``e`` + ``nd`` in any case; a yEnc
block starts at ``=ybegin ... name=NAME`` and ends at ``=yend``; a BinHex 4.0
block starts at the line ``(This file must be converted with BinHex 4.0)`` and
ends with the first line neither empty nor 64 characters long (its data lines
are 64). Any block ends where the next block or the text ends. A uuencoded
block is a file only when a line of it decodes to a byte: Thunderbird decodes
every line but empty ones, each to as many bytes as its first character says
(its low six bits after a space; none for a space or a backtick), so a begin
line with nothing after it (prose naming a file) is no file, while one cut off
before its end line is; lines that decode to nothing are skipped, however many.
Only begin and end lines (regular expressions with a literal prefix) and a
uuencoded file's lines that decode to a byte are searched for, each byte looked at
a few times at most, and only the first lines of each block are decoded, for its
magic bytes (and a BinHex file's name, which lies inside its data). A file whose
first bytes name nothing is read where a mark lies past them (``magic.MARKS``: an
ISO image's at byte 32769, a fixed VHD's footer): uuencoded or yEncoded, decoding only from there
(:func:`_uu_far`, :func:`_uu_tail`, :func:`_yenc_reader`); BinHexed, whose
run-length coding puts each byte where all before it say, decoding from its
start up to bounds (:func:`_hqx_range`). A message's BinHex reads share one
:class:`Budget`.
"""

from __future__ import annotations

import binascii
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from postwarden_policies import magic
from postwarden_policies.headers import LINE_BREAK, line_end

_BEGIN = (
    rb"(begin [0-7]{3,4} [ \t]*(?P<uu>[^\r\n]*)"
    rb"|=ybegin [^\r\n]*?name=(?P<yenc>[^\r\n]*)"
    rb"|\(This file must be converted with BinHex 4\.0\)(?P<binhex>[ \t]*)(?=[\r\n]|\Z))"
)
_FIRST_LINE = re.compile(_BEGIN)
_LATER_LINE = re.compile(rb"\n" + _BEGIN)
# A uuencoded line that decodes to a byte: not empty, its length character not one
# Thunderbird counts as none ((c - 32) & 63 == 0: space, backtick and their 8-bit twins).
# Its start follows a line end; the other lines are skipped at C speed, as Thunderbird
# skips them: only these count, however many there are around and between them.
_UU_DATA_LINE = re.compile(rb"[\r\n][^\r\n \x60\xa0\xe0]")
# The last such line in a window (the greedy prefix backtracks from the window's end).
_UU_LAST_DATA_LINE = re.compile(rb"(?s).*[\r\n]([^\r\n \x60\xa0\xe0])")
# Characters first searched back for it; each window after is twice the one before.
_UU_BACK_WINDOW = 4096
# A line's end and the empty lines after it, as far as lines alike may each end in
# them (characters at most: double or triple spacing).
_UU_ENDING = re.compile(rb"(?:\r\n?|\n)+")
_UU_ENDING_MOST = 8
_END = {
    "uu": re.compile(rb"\ne[nN][dD]"),
    "yenc": re.compile(rb"\n=yend"),
    "binhex": re.compile(rb"\n(?!(?:[^\r\n]{64})?\r?(?:\n|\Z))"),
}
# A uuencoded file's lines end as Thunderbird ends them (headers.LINE_BREAK). At most
# this many that decode to a byte are decoded for its head or a mark (its last 512
# bytes take 13 lines of 45): a block of short lines costs no more time than that.
_UU_LINES = 32
# Counts of a yEnc file's characters at most to find where a mark lies: a count or two
# more for each halving of the bytes left to reach it (line ends and escapes are none).
_YENC_COUNTS = 24
_ENCODINGS = {"uu": "x-uuencode", "yenc": "x-yenc", "binhex": "x-binhex"}
# The type Thunderbird gives the made-up part (it guesses no type from the name).
_TYPES = {"binhex": "application/mac-binhex40"}
# BinHex 4.0: six bits a character, then run-length coding (0x90 = repeat). Its
# characters are read as base64's that stand for the same bits; any other as "!".
_HQX_DIGITS = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_BASE64_DIGITS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HQX_AS_BASE64 = bytes(
    _BASE64_DIGITS[_HQX_DIGITS.index(byte)] if byte in _HQX_DIGITS else ord("!")
    for byte in range(256))
_HQX_RUN = 0x90
# Name length, name (255 at most) and the 21 bytes after it, before the data fork.
_HQX_HEADER = 1 + 255 + 21
# Run-length coding puts each byte of a BinHex file where all before it say (0x90 n:
# the last n - 1 more times): a mark past its head is read by decoding its text from
# the start, _HQX_PIECE characters at a time, counting at C speed the pieces before
# the mark, decoding one by one only those that hold it (at most _HQX_RUNS 0x90s: as
# encoders write them, each codes a byte or more, and a mark is 512 at most) and
# keeping only its bytes. Past _HQX_TEXT characters the file is known by its name: an
# ISO's mark takes at most some 90 KB of text (44 KB with no runs, fewer where runs
# code its zeros), a fixed VHD's footer all of it, some 750 KB of bytes that are no
# runs, however large it is.
_HQX_PIECE = 1 << 11
_HQX_TEXT = 1 << 20
_HQX_RUNS = 4096
# What the BinHex reads of one message may cost in all (:class:`Budget`): each block is
# read up to three times (its head, then each mark), and a thousand small ones, each
# with its 4,096 0x90s, took 4 s. Eight files read through their 1 MiB of text and 16
# reads through their 0x90s (some 0.15 s and 0.05 s); real mail BinHexes a file or two.
_MESSAGE_TEXT = 8 * _HQX_TEXT
_MESSAGE_RUNS = 16 * _HQX_RUNS
_HQX_REPEAT = re.compile(rb"\x90[\x01-\xff]")  # found left to right, as decoders pair them


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
    read: magic.Reader | None = None  # its marks past the head


@dataclass(slots=True)
class Budget:
    """What the BinHex reads of one message may still cost: characters of text decoded
    (at C speed, a piece at a time) and 0x90s decoded one by one (a Python step each).
    Once either is used up the reads stop short, and the message's files are flagged."""

    text: int = _MESSAGE_TEXT
    runs: int = _MESSAGE_RUNS

    @property
    def spent(self) -> bool:
        return self.text <= 0 or self.runs <= 0


def _begin_lines(text: bytes, start: int, end: int) -> Iterator[re.Match[bytes]]:
    first = _FIRST_LINE.match(text, start, end)
    return itertools.chain([first] if first else [], _LATER_LINE.finditer(text, start, end))


def blocks(
    text: bytes, start: int, end: int, limit: int, budget: Budget
) -> tuple[list[Block], bool]:
    """Up to ``limit`` blocks in ``text[start:end]``, and whether there are more; their
    BinHex reads (here and by ``Block.read``) within ``budget``."""
    lines = list(itertools.islice(_begin_lines(text, start, end), limit + 1))
    stops = [line.start(1) for line in lines[1:]] + [end]
    found = [_block(text, line, stop, budget)
             for line, stop in zip(lines[:limit], stops, strict=False)]
    return [block for block in found if block is not None], len(lines) > limit


def _block(text: bytes, begin: re.Match[bytes], stop: int, budget: Budget) -> Block | None:
    """The block ``begin`` starts (None: a uuencoded one whose lines decode to nothing)."""
    kind = next(kind for kind in _ENCODINGS if begin.group(kind) is not None)
    data_start = line_end(text, begin.end(1), stop)
    close = _END[kind].search(text, begin.end(1), stop)
    data_end = close.start() + 1 if close else stop
    # Where its lines are read from: a uuencoded file's first that decodes to a byte.
    first = _uu_first(text, data_start, data_end) if kind == "uu" else data_start
    if first is None:
        return None
    end = line_end(text, data_end, stop) if close else stop
    lines = text.count(b"\n", data_start, data_end)
    characters = data_end - data_start - 2 * lines
    name = begin.group(kind).strip().decode("utf-8", "replace")
    read = None
    if kind == "uu":
        head = _uu_range(text, first, data_end, 0, magic.HEAD_BYTES)
        read = _uu_reader(text, first, data_end)
        size = characters * 3 // 4  # a length character and 4 characters per 3 bytes
    elif kind == "yenc":
        head = _yenc_head(text, data_start, data_end)
        read = _yenc_reader(text, data_start, data_end)
        size = characters  # a byte a character, but for a few escapes
    else:
        name, head, read = _binhex(text, data_start, end, budget)  # its last line is short
        size = characters * 3 // 4  # before run-length decoding
    return Block(
        start=begin.start(1),
        data_start=data_start,
        end=end,
        name=name,
        size=max(0, size),
        head=head,
        encoding=_ENCODINGS[kind],
        content_type=_TYPES.get(kind, "application/octet-stream"),
        read=read,
    )


def _uu_reader(text: bytes, start: int, end: int) -> magic.Reader:
    """Reads the file the uuencoded lines ``text[start:end]`` decode to where a mark lies:
    from the start, or back from the end (b"" where it is shorter)."""
    def read(offset: int, length: int) -> bytes:
        if offset >= 0:
            return _uu_far(text, start, end, offset, length)
        tail = _uu_tail(text, start, end, -offset)
        return tail[:length] if len(tail) == -offset else b""
    return read


def _uu_far(text: bytes, start: int, end: int, skip: int, want: int) -> bytes:
    """The ``want`` bytes after the first ``skip``, decoding only the line that holds
    them: encoders write lines alike (45 bytes in 61 characters, some with empty lines
    after each), so its place is worked out run by run of lines alike, each counted at
    C speed, not line by line, lines that decode to nothing between runs skipped; b""
    where ``_UU_LINES`` runs do not reach it (then the file is known by its name only)."""
    for _ in range(_UU_LINES):
        line = next(_uu_lines(text, start, end), None)
        if line is None:
            return b""
        ending = _UU_ENDING.match(text, line[1], min(end, line[1] + _UU_ENDING_MOST))
        if ending is None:  # its last line, with no line end
            return b""
        start, count = line[0], _uu_count(text, line)
        stride = ending.end() - start
        lines = _alike(text, start, min(skip // count, (end - start) // stride), stride,
                       ending.group())
        if lines == skip // count:
            return _uu_range(text, start + lines * stride, end, skip - lines * count, want)
        start, skip = start + lines * stride, skip - lines * count
    return b""


def _alike(text: bytes, start: int, most: int, stride: int, ending: bytes) -> int:
    """How many of the ``most`` lines ``stride`` long from ``start`` on are like the
    first (:func:`_all_alike`): checked in spans twice as long each time until one is
    not, then in halves of it, so each line is looked at a few times at most."""
    lead = text[start : start + 1]
    done, span, growing = 0, 1, True
    while done < most and span:
        step = min(span, most - done)
        if _all_alike(text, start + done * stride, step, stride, lead=lead, ending=ending):
            done += step
            span = span * 2 if growing else span // 2
        else:
            growing, span = False, step // 2
    return done


def _all_alike(
    text: bytes, start: int, lines: int, stride: int, *, lead: bytes, ending: bytes
) -> bool:
    """Whether ``lines`` lines ``stride`` long from ``start`` on each start with the
    length character ``lead`` and end in the line ends ``ending`` alone."""
    stop = start + lines * stride
    ends = text.count(b"\n", start, stop) + text.count(b"\r", start, stop)
    return (
        text[start:stop:stride] == lead * lines
        and ends == lines * len(ending)
        and all(text[start + stride - len(ending) + at : stop : stride] == bytes([byte]) * lines
                for at, byte in enumerate(ending))
    )


def _uu_range(text: bytes, start: int, end: int, skip: int, want: int) -> bytes:
    """The ``want`` bytes after the first ``skip`` the uuencoded lines ``text[start:end]``
    decode to (fewer where they end, a line does not decode or ``_UU_LINES`` do not
    reach them)."""
    data = bytearray()
    at = 0  # bytes the lines before this one decode to
    for line in _uu_lines(text, start, end):
        count = _uu_count(text, line)
        if at + count > skip:
            try:
                data += _uu_decode(text, line)[max(0, skip - at) :]
            except binascii.Error:
                break
            if len(data) >= want:
                break
        at += count
    return bytes(data[:want])


def _uu_tail(text: bytes, start: int, end: int, want: int) -> bytes:
    """The last ``want`` bytes the uuencoded lines ``text[start:end]`` decode to (fewer
    where the file is shorter or ``_UU_LINES`` do not hold them, none where a line of
    them does not decode)."""
    pieces: list[bytes] = []
    held = 0
    for line in _uu_lines_back(text, start, end):
        try:
            pieces.append(_uu_decode(text, line))
        except binascii.Error:
            return b""
        held += len(pieces[-1])
        if held >= want:
            break
    return b"".join(reversed(pieces))[-want:]


def _uu_count(text: bytes, line: tuple[int, int]) -> int:
    """The bytes a uuencoded line decodes to, as its length character says."""
    begin, stop = line
    return (text[begin] - 32) & 63 if stop > begin else 0


def _uu_decode(text: bytes, line: tuple[int, int]) -> bytes:
    """A uuencoded line's bytes: the characters its length character asks for, however
    long the line is (raises binascii.Error on one outside the alphabet)."""
    begin, stop = line
    count = _uu_count(text, line)
    if not count:
        return b""
    return binascii.a2b_uu(text[begin : min(stop, begin + 1 + -(-count // 3) * 4)])[:count]


def _uu_first(text: bytes, start: int, end: int) -> int | None:
    """Where the first line of ``text[start:end]`` that decodes to a byte starts."""
    line = next(_uu_lines(text, start, end), None)
    return line[0] if line else None


def _uu_lines(text: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Where the lines of ``text[start:end]`` (``start`` a line's) that decode to a byte
    start and stop, first to last (at most ``_UU_LINES``)."""
    at = start
    for _ in range(_UU_LINES):
        found = _UU_DATA_LINE.search(text, at - 1, end)
        if found is None:
            return
        stop = LINE_BREAK.search(text, found.end() - 1, end)
        yield found.end() - 1, stop.start() if stop else end
        at = stop.end() if stop else end


def _uu_lines_back(text: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The lines of :func:`_uu_lines`, last to first (at most ``_UU_LINES``)."""
    stop = end
    for _ in range(_UU_LINES):
        begin = _uu_last_line(text, start, stop)
        if begin is None:
            return
        found = LINE_BREAK.search(text, begin, stop)
        yield begin, found.start() if found else stop
        stop = begin


def _uu_last_line(text: bytes, start: int, stop: int) -> int | None:
    """Where the last line of ``text[start:stop]`` (``start`` a line's) that decodes to
    a byte starts, searched back in windows twice as long each time: each byte is looked
    at a few times at most, however many lines decode to nothing before ``stop``."""
    width = _UU_BACK_WINDOW
    while stop > start:
        low = max(start - 1, stop - width)
        found = _UU_LAST_DATA_LINE.match(text, low, stop)
        if found is not None:
            return found.start(1)
        stop, width = low + 1, width * 2  # the line end at ``low`` may start a line after
    return None


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


def _yenc_reader(text: bytes, start: int, end: int) -> magic.Reader:
    """Reads the file the yEnc lines ``text[start:end]`` decode to where a mark lies,
    decoding from the character that starts it on (b"" where it is not found)."""
    if text.startswith(b"=ypart", start):  # a part's first line: no data
        start = line_end(text, start, end)

    def read(offset: int, length: int) -> bytes:
        if offset >= 0:
            at = _yenc_after(text, start, end, offset)
            # A head's worth, however the escapes and line ends after it fall.
            return _yenc_head(text, at, end)[:length] if at is not None else b""
        at = _yenc_before(text, start, end, -offset)
        tail = _yenc_head(text, at, end, -offset) if at is not None else b""
        return tail[:length] if len(tail) == -offset else b""
    return read


def _yenc_bytes(text: bytes, start: int, stop: int) -> int:
    """The bytes ``text[start:stop]`` decodes to, counted at C speed: a byte a character
    but line ends and escapes (an escape cut at ``start`` counts as its byte)."""
    ends = text.count(b"\r", start, stop) + text.count(b"\n", start, stop)
    return stop - start - ends - text.count(b"=", start, stop)


def _yenc_after(text: bytes, start: int, end: int, skip: int) -> int | None:
    """Where the byte after the first ``skip`` the yEnc lines ``text[start:end]`` decode
    to starts (None where ``_YENC_COUNTS`` counts do not reach it): each count is of as
    many characters as bytes are still wanted, until one holds no line end or escape."""
    at, held = start, 0
    for _ in range(_YENC_COUNTS):
        if held == skip:  # the last count held no escape, so none is cut at ``at``
            return at
        if at >= end:
            return None
        step = min(skip - held, end - at)
        held += _yenc_bytes(text, at, at + step)
        at += step
    return None


def _yenc_before(text: bytes, start: int, end: int, want: int) -> int | None:
    """Where the last ``want`` bytes the yEnc lines ``text[start:end]`` decode to start
    (None where the file is shorter or ``_YENC_COUNTS`` counts do not reach them)."""
    at, held = end, 0
    for _ in range(_YENC_COUNTS):
        if held == want:
            return at - (at > start and text[at - 1] == 0x3D)  # the escape of the first
        if at <= start:
            return None
        step = min(want - held, at - start)
        held += _yenc_bytes(text, at - step, at)
        at -= step
    return None


def _binhex(
    text: bytes, start: int, end: int, budget: Budget
) -> tuple[str, bytes, magic.Reader | None]:
    """The file name, the first bytes of the data fork and a reader of its marks of the
    BinHex lines ``text[start:end]`` (("", b"", None) when they do not decode).

    The data runs from a ``:`` to the next ``:``; decoded, it starts with the
    name's length and the name, then 21 bytes (version, type, creator, flags,
    fork lengths, checksum) before the data fork.
    """
    header = _hqx_range(text, start, end, 0, _HQX_HEADER + magic.HEAD_BYTES, budget=budget)
    if not header:
        return "", b"", None
    fork = 1 + header[0] + 21  # where the data fork starts
    name = header[1 : 1 + header[0]].decode("mac-roman", "replace")
    if len(header) < fork:
        return name, b"", None
    size = int.from_bytes(header[fork - 10 : fork - 6], "big")  # the data fork's length

    def read(offset: int, length: int) -> bytes:
        place = offset if offset >= 0 else size + offset
        wanted = min(length, size - place)
        if place < 0 or wanted <= 0:  # outside the data fork
            return b""
        return _hqx_range(text, start, end, fork + place, wanted, budget=budget)
    return name, header[fork:], read


@dataclass(slots=True)
class _Window:
    """The bytes from ``skip`` on, ``want`` of them, of a BinHex file decoded as it comes
    (run-length coding puts each byte where all those before it say)."""

    skip: int
    want: int
    budget: Budget  # the message's, whose 0x90s decoded one by one this spends too
    at: int = 0  # bytes decoded so far
    last: bytes = b""  # the last of them, which a run repeats
    held: bytearray = field(default_factory=bytearray)
    runs: int = 0  # 0x90s decoded one by one

    @property
    def done(self) -> bool:
        return (self.at >= self.skip + self.want or self.runs >= _HQX_RUNS
                or self.budget.runs <= 0)

    def passed(self, piece: bytes) -> bool:
        """Whether all ``piece`` (after a byte: its repeats have one) decodes to lies
        before the bytes held: then it is counted at C speed, not decoded."""
        plain = _HQX_REPEAT.sub(b"", piece)  # bytes, and 0x90 0 for 0x90 itself
        repeats = (len(piece) - len(plain)) // 2
        # A repeat 0x90 n is n - 1 bytes: its n is what the sums of the bytes differ by.
        length = (len(plain) - plain.count(b"\x90\x00")
                  + sum(piece) - sum(plain) - (_HQX_RUN + 1) * repeats)
        if self.at + length > self.skip:
            return False
        self.at += length
        self.last = b"\x90" if plain.endswith(b"\x90\x00") else plain[-1:] or self.last
        return True

    def decode(self, piece: bytes) -> None:
        """Decodes ``piece`` (no 0x90 without its count) until the bytes held are all, or
        ``_HQX_RUNS`` 0x90s are."""
        index = 0
        while index < len(piece) and not self.done:
            escape = piece.find(_HQX_RUN, index)
            self.add(piece[index : escape if escape >= 0 else len(piece)])
            if escape < 0:
                return
            self.run(piece[escape + 1])
            self.runs += 1
            self.budget.runs -= 1
            index = escape + 2

    def add(self, data: bytes) -> None:
        begin = max(0, self.skip - self.at)
        self.held += data[begin : max(begin, self.skip + self.want - self.at)]
        self.at += len(data)
        self.last = data[-1:] or self.last

    def run(self, count: int) -> None:
        """0x90 ``count``: the last byte ``count`` - 1 more times; 0x90 0 is 0x90 itself."""
        if count == 0:
            self.add(bytes([_HQX_RUN]))
            return
        kept = min(self.at + count - 1, self.skip + self.want) - max(self.at, self.skip)
        self.held += self.last * max(0, kept)
        self.at += count - 1


def _hqx_range(
    text: bytes, start: int, end: int, skip: int, want: int, *, budget: Budget
) -> bytes:
    """The ``want`` bytes after the first ``skip`` the BinHex lines ``text[start:end]``
    decode to, header first (fewer where they end or ``_HQX_TEXT`` characters,
    ``_HQX_RUNS`` 0x90s or what is left of ``budget`` do not reach them; none where
    they start with a repeat, which has no byte to repeat)."""
    window = _Window(skip, want, budget)
    for piece in _hqx_paired(text, start, end, budget):
        if not window.last and piece[:1] == b"\x90" and piece[1] != 0:
            return b""
        if not (window.last and window.passed(piece)):
            window.decode(piece)
        if window.done:
            break
    return bytes(window.held)


def _hqx_paired(text: bytes, start: int, end: int, budget: Budget) -> Iterator[bytes]:
    """The pieces of :func:`_hqx_pieces`, each ending where a 0x90 and its count do (a
    0x90 that ends the data is itself: 0x90 0). 0x90s pair from the first of a row,
    which follows a byte or a count: a row of an odd count ends in a 0x90 alone."""
    carry = b""
    for piece in _hqx_pieces(text, start, end, budget):
        joined = carry + piece
        lone = (len(joined) - len(joined.rstrip(b"\x90"))) % 2
        yield joined[: len(joined) - lone]
        carry = joined[len(joined) - lone :]
    if carry:
        yield b"\x90\x00"


def _hqx_pieces(text: bytes, start: int, end: int, budget: Budget) -> Iterator[bytes]:
    """The bytes the BinHex characters of ``text[start:end]`` stand for, before run-length
    decoding, in pieces (at C speed, six bits a character as base64's): from after
    the first ``:`` to the next one or another character outside the alphabet, line
    breaks and blanks skipped, at most ``_HQX_TEXT`` characters and what is left of
    ``budget``, which each piece spends."""
    colon = text.find(b":", start, min(end, start + _HQX_PIECE))
    if colon < 0:
        return
    stop = min(end, colon + 1 + _HQX_TEXT, colon + 1 + budget.text)
    carry = b""
    for at in range(colon + 1, stop, _HQX_PIECE):
        piece_end = min(stop, at + _HQX_PIECE)
        budget.text -= piece_end - at
        chars = carry + text[at:piece_end].translate(_HQX_AS_BASE64, b"\r\n\t ")
        foreign = chars.find(b"!")
        if foreign >= 0:
            yield _base64_last(chars[:foreign])
            return
        whole = len(chars) - len(chars) % 4
        yield binascii.a2b_base64(chars[:whole])
        carry = chars[whole:]
    yield _base64_last(carry)


def _base64_last(chars: bytes) -> bytes:
    """The bytes of the last base64 characters of a stream: a character's bits short of
    a byte at its end are none."""
    chars = chars[: len(chars) - (len(chars) % 4 == 1)]
    return binascii.a2b_base64(chars + b"=" * (-len(chars) % 4))
