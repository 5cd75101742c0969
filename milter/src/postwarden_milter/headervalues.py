"""Header values as libmilter takes them from pymilter.

pymilter hands a value over as a strict UTF-8 C string: it refuses bytes, and raw
8-bit that is not UTF-8 (kept as surrogate escapes since the message was read) fails
the call. Such words go out as RFC 2047 encoded words carrying those very bytes.
Lines are folded with bare LF before a blank, as Postfix wants them: as they came,
and wherever a line would pass 998 octets.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

# RFC 5322 2.1.1: a line SHOULD be at most 78 octets, MUST at most 998; lines within
# 998 stay as the sender or rule made them, longer ones are folded to 78 where they can.
LINE_OCTETS = 78
MAX_LINE_OCTETS = 998
RAW_CHARSET = "ISO-8859-1"  # the label raw 8-bit goes under: every byte is a character
_BREAK = re.compile(r"\r\n|\r|\n")
_ONE_PLAIN_LINE = re.compile(r"[\x01-\x09\x0b\x0c\x0e-\x7f]*")  # ASCII, no line end, no NUL
_BLANKS = re.compile(r"([ \t\r\n]+)")
# As headers.py reads them: the encoded text may hold spaces (readers decode it anyway).
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?]*\?=")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_TEXT = 75 - len(f"=?{RAW_CHARSET}?Q??=")  # RFC 2047: an encoded word is at most 75


def sendable(name: str, text: str, leading_space: bool) -> str:
    """A header value as libmilter takes it: folded with bare LF before a blank (as it
    came, and wherever a line would pass 998 octets); valid UTF-8, as pymilter hands it
    over as a strict UTF-8 C string (it refuses bytes, and raw 8-bit that is not UTF-8
    fails the call); no NUL; the space after the colon when we supply it."""
    used = len(name) + len(": ")
    if _ONE_PLAIN_LINE.fullmatch(text) and used + len(text) <= MAX_LINE_OCTETS:
        value = text  # our id header and most edits: nothing to encode or fold
    else:
        lines = _BREAK.split(encode_raw_words(text.replace("\0", "")))
        folded: list[str] = []
        for line in _continuations(lines):
            folded += fold_line(line, used)
            used = 0
        value = "\n".join(folded)
    return " " + value if leading_space else value


def _continuations(lines: list[str]) -> list[str]:
    """Lines after the first as continuations: a blank leads each (a break before any
    other text would start a new field), none is blanks alone (folds nothing)."""
    joined = lines[:1]
    for line in lines[1:]:
        if not line.strip(" \t"):
            joined[-1] += line
        else:
            joined.append(line if line[:1] in (" ", "\t") else " " + line)
    return joined


def encode_raw_words(text: str) -> str:
    """``text`` with its words of raw 8-bit bytes that are not UTF-8 (kept as surrogate
    escapes) as RFC 2047 encoded words, which carry those very bytes: pymilter cannot
    send them raw. Adjacent such words go into one run (a reader drops the blanks between
    encoded words), and so do the blanks beside an encoded word the text already had."""
    if not _is_raw(text):
        return text
    parts = _BLANKS.split(text)  # words at even indexes, the blanks between at odd ones
    raw = [index % 2 == 0 and _is_raw(part) for index, part in enumerate(parts)]
    out: list[str] = []
    index = 0
    while index < len(parts):
        if not raw[index]:
            out.append(parts[index])
            index += 1
            continue
        run = [parts[index]]
        if index >= 2 and _ENCODED_WORD.fullmatch(parts[index - 2]):
            run.insert(0, out.pop())  # the blanks after that word, which readers drop
            out.append(" ")
        after = index + 2
        while after < len(parts) and raw[after]:
            run += parts[after - 1 : after + 1]
            after += 2
        if after < len(parts) and _ENCODED_WORD.fullmatch(parts[after]):
            run.append(parts[after - 1])  # the blanks before that word, likewise
            out += [_q_words(run), " "]
            index = after
        else:
            out.append(_q_words(run))
            index = after - 1
    return "".join(out)


def _is_raw(word: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in word)


def _q_words(run: list[str]) -> str:
    """The run's bytes as ``Q`` encoded words, blanks between them."""
    data = "".join(run).replace("\r", "").replace("\n", "").encode("utf-8", "surrogateescape")
    chunks = [""]
    for byte in data:
        piece = "_" if byte == 0x20 else chr(byte) if byte in _Q_SAFE else f"={byte:02X}"
        if len(chunks[-1]) + len(piece) > _Q_TEXT:
            chunks.append("")
        chunks[-1] += piece
    return " ".join(f"=?{RAW_CHARSET}?Q?{chunk}?=" for chunk in chunks)


def fold_line(line: str, used: int) -> list[str]:
    """``line`` as it is if it fits 998 octets (``used`` already taken on it), else in
    pieces, each after the first starting with the blank it is folded before: 78 octets
    where a blank allows it, 998 always, never inside an encoded word. A run without
    blanks longer than 998 is cut anyway, with a space put in: no line may be longer."""
    ends = list(accumulate((len(char.encode("utf-8")) for char in line), initial=0))
    if ends[-1] + used <= MAX_LINE_OCTETS:
        return [line]
    inside = bytearray(len(line))
    for word in _ENCODED_WORD.finditer(line):
        inside[word.start():word.end()] = b"\1" * (word.end() - word.start())
    last_text = len(line.rstrip(" \t"))
    # Fold points: the first blank after text, with more text to come, outside a word.
    points = [i for i in range(1, last_text) if line[i] in " \t"
              and line[i - 1] not in " \t" and not inside[i]]
    point_ends = [ends[i] for i in points]
    pieces: list[str] = []
    start, lead = 0, ""
    while ends[-1] - ends[start] + used + len(lead) > LINE_OCTETS:
        base = ends[start] - used - len(lead)
        after = bisect_right(points, start)
        fits = bisect_right(point_ends, base + LINE_OCTETS) - 1
        if fits >= after:
            cut, next_lead = points[fits], ""
        elif after < len(points) and point_ends[after] - base <= MAX_LINE_OCTETS:
            cut, next_lead = points[after], ""
        elif ends[-1] - base <= MAX_LINE_OCTETS:
            break
        else:  # at least one character a line, whatever the name took
            cut = max(bisect_right(ends, base + MAX_LINE_OCTETS) - 1, start + 1)
            next_lead = " "
        pieces.append(lead + line[start:cut])
        start, lead, used = cut, next_lead, 0
    pieces.append(lead + line[start:])
    return pieces
