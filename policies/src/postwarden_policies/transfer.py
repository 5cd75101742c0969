"""Content-Transfer-Encoding: sizes and prefixes cheaply, full decode and re-encode.

The parser only needs sizes and the first bytes of each part, so those are
computed without decoding whole bodies. Re-encoding keeps the original's
style: the same base64 line length and the message's own line ending.
"""

from __future__ import annotations

import binascii
import re

from . import magic

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_PAD_AND_SPACE = b"=\r\n \t"
_SAMPLE = 4096  # bytes checked at each end of a regular base64 body
HEAD_SCAN = 65_536  # encoded bytes searched at most for a part's first decoded bytes
_B64_NOT_DATA = bytes(sorted(set(range(256)) - set(_B64_ALPHABET + b"=")))
_BARE_CR = re.compile(rb"\r(?!\n)")
# Blanks that end an encoded line, which RFC 2045 6.7 (3) has decoders drop: an encoder
# writes a file's own as "=20"/"=09", so these are a gateway's padding (after a "=",
# the line is a soft break still). a2b_qp, Python's email package and Thunderbird keep
# them: a stripped file's size and SHA-256 were not the file's, and "M= \r\nZ" hid
# from type detection the executable Dovecot and PHP (Roundcube) decode. A run is tried
# from its start only, not backtracked into: megabytes of blanks cost milliseconds.
_PADDED = (b" \r\n", b"\t\r\n", b" \n", b"\t\n")
_QP_PADDING = re.compile(rb"(?<![ \t])[ \t]++(?=\r?\n|\Z)")
# Quoted-printable text with a hex digit as "h" and any other byte but "=" as "x":
# an escape readers decode is then "=hh".
_QP_SHAPES = bytes(
    byte if byte == 0x3D else 0x68 if byte in b"0123456789ABCDEFabcdef" else 0x78
    for byte in range(256)
)
# Runs between padding decoded each on its own, at most (see _base64_runs): more than a
# part's head holds (each takes a "="), few enough to cost milliseconds.
_RUNS_APART = 65_536
KNOWN_ENCODINGS = frozenset({"7bit", "8bit", "binary", "base64", "quoted-printable"})
QP_LINE = 76  # RFC 2045 6.7: an encoded line is at most 76 characters


def base64_size(raw: bytes, start: int, end: int) -> tuple[int, bool]:
    """(decoded size, well formed) of the base64 text ``raw[start:end]``, not decoded."""
    if _padding_inside(raw, start, end):
        return _alphabet_size(raw, start, end)[0], False
    regular = _regular_base64_size(raw, start, end)
    if regular is not None:
        return regular, True
    return _alphabet_size(raw, start, end)


def _alphabet_size(raw: bytes, start: int, end: int) -> tuple[int, bool]:
    chunk = raw[start:end]
    other = chunk.translate(None, _B64_ALPHABET)  # one pass; small for real base64
    alphabet = len(chunk) - len(other)
    garbage = other.translate(None, _B64_PAD_AND_SPACE)
    return alphabet * 3 // 4, not garbage and alphabet % 4 != 1


def _padding_inside(raw: bytes, start: int, end: int) -> bool:
    """Base64 text goes on after a ``=``: readers that decode each group of four
    on its own read on (``PA==PGltZz4=`` is ``<<img>``), others stop at it."""
    pad = raw.find(b"=", start, end)
    return pad >= 0 and bool(raw[pad:end].translate(None, _B64_PAD_AND_SPACE))


def _regular_base64_size(raw: bytes, start: int, end: int) -> int | None:
    """The fast path for what every mailer writes: lines of one length.

    Checks every line break with two strided slices and the first and last few
    kilobytes for foreign characters instead of translating megabytes; returns
    None when the text is not that regular and the caller counts it all.
    """
    first_nl = raw.find(b"\n", start, min(end, start + 1024))
    tail = raw[max(start, end - _SAMPLE) : end].rstrip(b"\r\n \t")
    if first_nl <= start or not tail:
        return None
    stop = end - _SAMPLE + len(tail) if end - start > _SAMPLE else start + len(tail)
    newline = b"\r\n" if raw[first_nl - 1] == 0x0D else b"\n"
    width = first_nl + 1 - start  # a full line including its line break
    text = width - len(newline)
    lines = (stop - start) // width
    for offset, char in enumerate(newline):
        ends = raw[start + text + offset : start + lines * width : width]
        if ends != bytes([char]) * lines:
            return None
    last_line = raw[start + lines * width : stop]
    head = raw[start : min(stop, start + _SAMPLE)]
    # A blank (which readers skip) would be counted as data: a gateway's, ending each line.
    if b"\n" in last_line or any(
        sample.translate(None, _B64_ALPHABET + b"=\r\n") for sample in (head, tail)
    ):
        return None
    padding = len(last_line) - len(last_line.rstrip(b"="))
    alphabet = lines * text + len(last_line) - padding
    return alphabet * 3 // 4 if alphabet % 4 != 1 else None


def qp_size(raw: bytes, start: int, end: int) -> int:
    """Decoded size of quoted-printable text, at least what any reader decodes it to:
    only an escape of two hex digits (either case, as readers take it) or a soft line
    break shrinks it (blanks ending a line, which :func:`decode` drops, count). A "="
    readers cannot decode is kept as written ("=ZZ", "===="), so a limit on the decoded
    size holds for malformed text too."""
    escapes = raw[start:end].translate(_QP_SHAPES).count(b"=hh")
    soft_crlf = raw.count(b"=\r\n", start, end)
    soft_lf = raw.count(b"=\n", start, end)
    return end - start - 2 * escapes - 3 * soft_crlf - 2 * soft_lf


def decode_head(
    raw: bytes, start: int, end: int, encoding: str, want: int = magic.HEAD_BYTES, *,
    skip: int = 0,
) -> bytes | None:
    """The first ``want`` decoded bytes (about) but the ``skip`` first, decoding only
    a prefix.

    Readers skip whitespace and soft line breaks before the data, so the
    window doubles until it decodes to ``want`` bytes. None when ``HEAD_SCAN``
    encoded bytes (four for each byte wanted, if more) are not enough while the
    part goes on: the head is hidden.
    """
    window = want * 2
    scan = _scan(want)
    while True:
        stop = min(end, start + window)
        data = raw[start:stop] if stop == end else _cut_whole(raw[start:stop], encoding)
        head = _decode_prefix(data, encoding, skip, want)
        if len(head) >= want - skip or stop == end:
            return head[: want - skip]
        if window >= scan:
            return None
        window = min(window * 2, scan)


def _cut_whole(data: bytes, encoding: str) -> bytes:
    """The start of a part without a quoted-printable escape or soft line break its cut
    broke ("=4", "=", "=\r"): "=4" would decode as written. (Blanks it ends in decode
    as padding, to nothing: fewer bytes, none wrong. A base64 group cut short decodes
    to its whole bytes.)"""
    if encoding != "quoted-printable":
        return data
    escape = data.rfind(b"=", max(0, len(data) - 2))
    return data[:escape] if escape >= 0 else data


def _decode_prefix(data: bytes, encoding: str, skip: int, want: int) -> bytes:
    """The decoded ``data`` but its ``skip`` first bytes; base64's up to ``want`` only,
    the text before them cleaned, not decoded (a quarter of the time), unless padding
    inside it has readers disagree on where they start."""
    if encoding == "base64" and skip:
        clean = data.translate(None, _B64_NOT_DATA)
        stop = -(-want // 3) * 4
        if b"=" not in clean[:stop]:
            return _decode_run(clean[skip // 3 * 4 : stop])[skip % 3 :]
    return decode(data, encoding)[skip:]


def _scan(want: int) -> int:
    """Encoded bytes searched at most for ``want`` decoded ones: quoted-printable
    takes three for a byte of binary, and a soft line break every 76."""
    return max(HEAD_SCAN, 4 * want)


def decode_at(
    raw: bytes, start: int, end: int, encoding: str, *, offset: int, length: int,
    size: int | None,
) -> bytes | None:
    """``length`` decoded bytes at ``offset`` (negative: from the end), decoding only a
    prefix or a suffix; ``size``: the exact decoded size, which a base64 suffix needs
    (b"" without it). None when padding hides them, as :func:`decode_head` says."""
    if offset >= 0:
        return decode_head(raw, start, end, encoding, offset + length, skip=offset)
    if encoding == "base64" and size is None:
        return b""
    want = -offset
    window = want * 2
    scan = _scan(want)
    while True:
        begin = max(start, end - window)
        tail = _decode_suffix(raw, start, end, encoding, begin=begin, size=size or 0)
        if len(tail) >= want:
            return tail[-want:][:length]
        if begin == start:
            return b""  # shorter than that
        if window >= scan:
            return None
        window = min(window * 2, scan)


def _decode_suffix(
    raw: bytes, start: int, end: int, encoding: str, *, begin: int, size: int
) -> bytes:
    """The decoded bytes of ``raw[start:end]`` from about ``begin`` to its end: from the
    next group of four in base64 (its decoded ``size`` says where they start); in
    quoted-printable but two, which an escape or a soft line break cut in two decodes to
    (however long its lines)."""
    if begin == start:
        return decode(raw[start:end], encoding)
    if encoding == "base64":
        clean = raw[begin:end].translate(None, _B64_NOT_DATA).rstrip(b"=")
        alphabet = size // 3 * 4 + (0, 2, 3)[size % 3]
        return _decode_run(clean[(len(clean) - alphabet) % 4 :])
    if encoding == "quoted-printable":
        return decode(raw[begin:end], encoding)[2:]
    return raw[begin:end]


def decode(data: bytes, encoding: str, *, keep_padding: bool = False) -> bytes:
    """The decoded bytes; broken base64 decodes what it can (garbage is flagged by the
    parser, which samples it, not here). Quoted-printable drops the blanks that end a
    line, as RFC 2045 has decoders do (a file is what its sender attached); with
    ``keep_padding``, as Thunderbird shows text (format=flowed reads a soft break from
    such a blank)."""
    if encoding == "base64":
        return _base64_runs(data.translate(None, _B64_NOT_DATA))
    if encoding == "quoted-printable":
        if data.count(b"\r") != data.count(b"\r\n"):
            # a2b_qp takes "=" and a bare CR for a soft break running to the next LF,
            # hiding what lies between; readers end the line at the CR.
            data = _BARE_CR.sub(b"\r\n", data)
        if not keep_padding and qp_padded(data):
            data = _QP_PADDING.sub(b"", data)
        return binascii.a2b_qp(data)
    return data


def qp_padded(data: bytes) -> bool:
    """Whether quoted-printable text has blanks ending a line, which readers decode
    apart (:func:`decode`). Searched for as substrings first: the expression takes
    twenty times as long as decoding, and nearly no text has any."""
    return any(blank in data for blank in _PADDED) or data.endswith((b" ", b"\t"))


def _base64_runs(clean: bytes) -> bytes:
    """Base64 text that goes on after its padding (flagged by the parser) as readers that
    decode on past it read it: each run between padding on its own ("PA==PGltZz4=" is
    "<<img>"); a reader that stops at it reads the start. Past :data:`_RUNS_APART` runs
    the rest is decoded as one, without its padding: a step per run would take a
    second a few megabytes of "QQ==" (a part's head, within ``HEAD_SCAN``, has fewer)."""
    runs = clean.split(b"=", _RUNS_APART)
    runs[-1] = runs[-1].replace(b"=", b"")
    return b"".join([_decode_run(run) for run in runs])


def _decode_run(run: bytes) -> bytes:
    return binascii.a2b_base64(run[: len(run) - len(run) % 4] + _pad(run))


def _pad(clean: bytes) -> bytes:
    # A final group of 2 or 3 characters is a truncated but decodable tail.
    tail = clean[len(clean) - len(clean) % 4 :]
    return tail + b"=" * (-len(tail) % 4) if len(tail) >= 2 else b""


def utf16_as_sent(utf16: bytes) -> bytes:
    """UTF-16 that travelled in lines as its sender wrote it: Postfix completed each lone
    LF byte with a CR (half of "\\n", or of another character), which shifts what
    follows a byte, the lines after it read as CJK text. Without them, as local
    delivery drops them, and without a last lone LF byte: the line end SMTP's DATA
    needs after the last line, no character."""
    data = utf16.replace(b"\r\n", b"\n")
    return data[:-1] if len(data) % 2 and data.endswith(b"\n") else data


def base64_line_length(data: bytes) -> int:
    """The line length of existing base64 text (76 when there is no clear style)."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    length = len(first) - len(first) % 4
    return length if 4 <= length <= 76 and b"\n" in data else 76


def encode(data: bytes, encoding: str, newline: bytes, line_length: int = 76) -> bytes:
    """Encode ``data`` (text with LF or CRLF line ends) for the given transfer encoding.

    7bit/8bit/binary text gets ``newline`` line ends; quoted-printable too;
    base64 lines are ``line_length`` characters long.
    """
    if encoding == "base64":
        encoded = binascii.b2a_base64(data, newline=False)
        lines = [encoded[i : i + line_length] for i in range(0, len(encoded), line_length)]
        return newline.join(lines)
    text = data.replace(b"\r\n", b"\n")
    if encoding == "quoted-printable":
        text = _within_qp_lines(binascii.b2a_qp(text, istext=True))
    return text.replace(b"\n", newline)


def _within_qp_lines(text: bytes) -> bytes:
    """b2a_qp's output with no line past :data:`QP_LINE`: it writes a blank that ends a
    line as "=20" past the limit (75 characters and a space come out 78 long)."""
    lines: list[bytes] = []
    for written in text.split(b"\n"):
        rest = written
        while len(rest) > QP_LINE:
            head, rest = qp_split(rest)
            lines.append(head)
        lines.append(rest)
    return b"\n".join(lines)


def qp_split(line: bytes) -> tuple[bytes, bytes]:
    """A quoted-printable line past :data:`QP_LINE` as its first piece, ended by a soft
    break, and the rest; never cut inside an "=XX" escape."""
    cut = QP_LINE - 1  # room for the soft break's "="
    while b"=" in line[cut - 2 : cut]:
        cut -= 1
    return line[:cut] + b"=", line[cut:]
