"""A header value's raw 8-bit words as RFC 2047 encoded words of the text readers read.

A value edited (a Subject prefixed) must reach Postfix through pymilter, which hands it
over as a strict UTF-8 C string: raw bytes that are not UTF-8 (kept as surrogate escapes
since the message was read) cannot go as they came. They go as encoded words in UTF-8
of the text readers showed for them (:func:`charsets.decode_not_utf8`, the reading
``Header.value`` holds: a KOI8-R Subject in a KOI8-R message as Cyrillic), not of the
bytes under a label of ours, which showed any but a Latin-1 Subject garbled.
"""

from __future__ import annotations

import re

from .charsets import decode_not_utf8
from .headers import ENCODED_WORD

CHARSET = "UTF-8"
_BLANKS = re.compile(r"([ \t\r\n]+)")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_TEXT = 75 - len(f"=?{CHARSET}?Q??=")  # RFC 2047: an encoded word is at most 75


def encode_raw_words(text: str, charset: str | None) -> str:
    """``text`` (a value with raw 8-bit bytes that are not UTF-8 as a whole) with its
    words past ASCII as encoded words of what readers read them as, ``charset`` the one
    the entity declares. Adjacent such
    words go into one run (a reader drops the blanks between encoded words), and so do
    the blanks beside an encoded word the text already had; a NUL goes."""
    if not any("\udc80" <= char <= "\udcff" for char in text):
        return text  # UTF-8 as a whole (or ASCII): readers read it as it goes
    parts = _BLANKS.split(text)  # words at even indexes, the blanks between at odd ones
    # Every word past ASCII: one that is UTF-8 on its own reads as the whole does too.
    raw = [index % 2 == 0 and not part.isascii() for index, part in enumerate(parts)]
    out: list[str] = []
    index = 0
    while index < len(parts):
        if not raw[index]:
            out.append(parts[index])
            index += 1
            continue
        run = [parts[index]]
        if index >= 2 and ENCODED_WORD.fullmatch(parts[index - 2]):
            run.insert(0, out.pop())  # the blanks after that word, which readers drop
            out.append(" ")
        after = index + 2
        while after < len(parts) and raw[after]:
            run += parts[after - 1 : after + 1]
            after += 2
        if after < len(parts) and ENCODED_WORD.fullmatch(parts[after]):
            run.append(parts[after - 1])  # the blanks before that word, likewise
            out += [_q_words(run, charset), " "]
            index = after
        else:
            out.append(_q_words(run, charset))
            index = after - 1
    return "".join(out)


def _q_words(run: list[str], charset: str | None) -> str:
    """The run's text as ``Q`` encoded words, blanks between them."""
    data = "".join(run).translate({0: None, 0x0D: None, 0x0A: None})
    return " ".join(q_words(decode_not_utf8(data.encode("utf-8", "surrogateescape"), charset)))


def q_words(text: str) -> list[str]:
    """``text`` as UTF-8 ``Q`` encoded words of at most 75 characters, each of whole
    characters (a reader may decode each word alone); readers drop the blanks between
    them, so the words read as ``text`` whatever folds them."""
    chunks = [""]
    for char in text:
        piece = "".join("_" if byte == 0x20 else chr(byte) if byte in _Q_SAFE else f"={byte:02X}"
                        for byte in char.encode("utf-8", "surrogateescape"))
        if len(chunks[-1]) + len(piece) > _Q_TEXT:
            chunks.append("")
        chunks[-1] += piece
    return [f"=?{CHARSET}?Q?{chunk}?=" for chunk in chunks]
