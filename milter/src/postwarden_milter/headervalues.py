"""Header values as libmilter takes them from pymilter.

pymilter hands a value over as a strict UTF-8 C string: it refuses bytes, and raw
8-bit that is not UTF-8 (kept as surrogate escapes since the message was read) fails
the call; the policy library puts such words of a value it edits in RFC 2047 encoded
words (postwarden_policies.rawwords). Lines are folded with bare LF before a blank, as
Postfix wants them: as they came, wherever a line would pass 998 octets, and wherever
one holding an encoded word would pass RFC 2047's 76 characters (a prefix put in front
of a Subject that filled its first line, say). A run without blanks too long for any
line goes as encoded words, which read as the run did.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

from postwarden_policies.headers import ENCODED_WORD
from postwarden_policies.rawwords import q_words

# RFC 5322 2.1.1: a line SHOULD be at most 78 octets, MUST at most 998; lines within
# 998 stay as the sender or rule made them, longer ones are folded to 78 where they can.
LINE_OCTETS = 78
MAX_LINE_OCTETS = 998
# RFC 2047 2: a line holding an encoded word is at most 76 characters (some readers
# leave the words of a longer one undecoded); folded between words, it reads the same.
ENCODED_LINE = 76
_BREAK = re.compile(r"\r\n|\r|\n")
_ONE_PLAIN_LINE = re.compile(r"[\x01-\x09\x0b\x0c\x0e-\x7f]*")  # ASCII, no line end, no NUL
_RUN = re.compile(r"[^ \t]+")


def sendable(name: str, text: str, leading_space: bool) -> str:
    """A header value as libmilter takes it: folded with bare LF before a blank (as it
    came, and wherever a line would pass 998 octets); no NUL, which would end pymilter's
    C string; the space after the colon when we supply it."""
    used = len(name) + len(": ")
    if _ONE_PLAIN_LINE.fullmatch(text) and used + len(text) <= _longest(text):
        value = text  # our id header and most edits: nothing to fold
    else:
        lines = _BREAK.split(text.replace("\0", ""))
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


def _longest(line: str) -> int:
    """How long ``line`` may stay as it is: 76 with an encoded word, else 998."""
    return ENCODED_LINE if ENCODED_WORD.search(line) else MAX_LINE_OCTETS


def _runs_as_words(line: str, used: int) -> str:
    """``line`` with each run without blanks that no line could hold (998 octets, after
    a blank or ``used``) as encoded words: cut with a space put in, it would read so."""
    room = MAX_LINE_OCTETS - max(used, 1)

    def words(run: re.Match[str]) -> str:
        text = run.group()
        if _octets(text) <= room or ENCODED_WORD.search(text):
            return text  # re-encoded, an encoded word in it would read as its code
        return " ".join(q_words(text))

    return _RUN.sub(words, line)


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def fold_line(line: str, used: int) -> list[str]:
    """``line`` as it is if it fits 998 octets (76 with an encoded word; ``used`` already
    taken on it), else in pieces, each after the first starting with the blank it is
    folded before: 78 octets (76) where a blank allows it, 998 always, never inside an
    encoded word. A run without blanks longer than 998 goes as encoded words; one that
    holds an encoded word is cut anyway, with a space put in: no line may be longer."""
    if _octets(line) + used <= _longest(line):
        return [line]
    line = _runs_as_words(line, used)
    ends = list(accumulate((len(char.encode("utf-8")) for char in line), initial=0))
    longest = _longest(line)
    width = min(LINE_OCTETS, longest)
    inside = bytearray(len(line))
    for word in ENCODED_WORD.finditer(line):
        inside[word.start():word.end()] = b"\1" * (word.end() - word.start())
    last_text = len(line.rstrip(" \t"))
    # Fold points: the first blank after text, with more text to come, outside a word.
    points = [i for i in range(1, last_text) if line[i] in " \t"
              and line[i - 1] not in " \t" and not inside[i]]
    point_ends = [ends[i] for i in points]
    pieces: list[str] = []
    start, lead = 0, ""
    while ends[-1] - ends[start] + used + len(lead) > width:
        base = ends[start] - used - len(lead)
        after = bisect_right(points, start)
        fits = bisect_right(point_ends, base + width) - 1
        if fits >= after:
            cut, next_lead = points[fits], ""
        elif after < len(points) and point_ends[after] - base <= MAX_LINE_OCTETS:
            cut, next_lead = points[after], ""
        elif ends[-1] - base <= MAX_LINE_OCTETS:
            break
        else:  # at least one character a line, whatever the name took
            cut = bisect_right(ends, base + MAX_LINE_OCTETS) - 1
            # Some text after it: blanks alone on the last line end the header section
            # for some parsers.
            cut = max(min(cut, last_text - 1), start + 1)
            next_lead = " "
        pieces.append(lead + line[start:cut])
        start, lead, used = cut, next_lead, 0
    pieces.append(lead + line[start:])
    return pieces
