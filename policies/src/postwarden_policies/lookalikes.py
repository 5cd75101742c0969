"""Words that mix scripts, read with their Cyrillic and Greek lookalikes as Latin.

"P\u0430ypal" (U+0430 CYRILLIC SMALL LETTER A) and "micr\u03bfsoft" (Greek omicron)
look like "Paypal" and "microsoft" but are other strings. :func:`as_latin` reads
them as readers see them: in each *mixed* word, each Cyrillic or Greek letter in
:data:`LOOKALIKES` becomes the Latin letter it is drawn like.

A *word* is a run of letters (any script), digits, underscores and combining
marks (what ``\\w`` matches, and the marks); punctuation, symbols and spaces end
it. A word is *mixed* (Unicode's mixed script, UTS #39) where two of its letters
side by side are of different scripts among Latin (U+0041-005A, U+0061-007A,
U+00C0-027F: not the IPA letters nor the modifier letters after them, such as the
apostrophe Ukrainian writes, U+02BC), Cyrillic (U+0400-052F) and Greek (U+0386-03FF).
A word written wholly in Cyrillic or Greek is never changed: Russian
"\u0441\u043e\u0440" stays "\u0441\u043e\u0440", not "cop".

Cheap and linear, in C where it can be: ASCII text is returned at once; other
text is classed one byte per character (its UTF-8 lead byte through a table) and
scripts meeting side by side are found with integer arithmetic on those bytes;
only then are the few mixed words cut out and read. A text where scripts meet
more than :data:`MANY_MIXED` times, and more than once in :data:`MIXED_SPAN`
characters, is written to evade: all its lookalikes are read as Latin, in one
pass, rather than word by word.
"""

from __future__ import annotations

import re

# Cyrillic and Greek letters drawn like a Latin letter (each is so in Unicode's
# confusables.txt), to that letter.
LOOKALIKES = str.maketrans(
    # Cyrillic
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u043a\u0456\u0458\u0455\u04bb\u0501\u051b"
    "\u051d\u04cf\u04af\u0475"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0406\u0408\u0405"
    "\u051a\u051c\u04c0\u04ae\u0474"
    # Greek
    "\u03bf\u03b1\u03bd\u03c1\u03b9\u03b3\u03c5\u03ba\u03f2\u03f3"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"
    "\u03f9",
    "aeopcyxkijshdqwlyv"
    "ABEKMHOPCTXIJSQWIYV"
    "oavpiyukcj"
    "ABEZHIKMNOPTYXC",
)
# Places where scripts meet past which every lookalike is read (word by word, each
# costs about 2 us; all of the text, 40 ns a character): at least this many, and
# one in MIXED_SPAN characters.
MANY_MIXED = 1000
MIXED_SPAN = 64

_LATIN, _CYRILLIC, _GREEK = 1, 2, 4


def _script_table() -> bytes:
    """The script bit of each UTF-8 lead byte's characters (0: no script counted)."""
    table = bytearray(256)
    for letter in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        table[letter] = _LATIN
    table[0xC3:0xCA] = bytes([_LATIN]) * 7  # U+00C0-027F (and the signs for times and divide)
    table[0xCE:0xD0] = bytes([_GREEK]) * 2  # U+0380-03FF
    table[0xD0:0xD5] = bytes([_CYRILLIC]) * 5  # U+0400-053F (Armenian from U+0531)
    return bytes(table)


_SCRIPT_OF_LEAD = _script_table()
_CONTINUATION = bytes(range(0x80, 0xC0))  # dropped: one byte is left per character
_MET = bytes([0]) + bytes([1]) * 255  # a place where scripts meet, as 1

_MARKS = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_WORD = re.compile(rf"[\w{_MARKS}]*+")  # one character class: a few ns a character
_SCRIPT_LETTERS = (
    "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u027f",
    "\u0400-\u052f",
    "\u0386-\u03ff",
)
_SCRIPTS_MEET = re.compile(
    "|".join(
        f"[{letters}](?=[{''.join(other for other in _SCRIPT_LETTERS if other != letters)}])"
        for letters in _SCRIPT_LETTERS
    )
)


def as_latin(text: str) -> str:
    """``text`` with the lookalikes of its mixed words read as Latin letters: ``text``
    itself where no word is mixed."""
    if text.isascii():  # O(1): the common case costs nothing
        return text
    met = _places_scripts_meet(text)
    if not met:
        return text
    if met.bit_count() > max(MANY_MIXED, len(text) // MIXED_SPAN):
        return text.translate(LOOKALIKES)
    places = met.to_bytes(len(text), "little").translate(_MET)
    backwards = text[::-1]  # where a word starts is where it ends, read backwards
    pieces: list[str] = []
    done = 0
    at = places.find(1)
    while at != -1:
        # The word of characters at and at + 1 (of one of them where the other is none).
        start = at + 1 - _word_length(backwards, len(text) - 1 - at, len(text) - done)
        end = at + 1 + _word_length(text, at + 1, len(text))
        word = text[start:end]
        pieces += (text[done:start], word.translate(LOOKALIKES) if _mixed(word) else word)
        done = end
        at = places.find(1, max(end, at + 1))
    pieces.append(text[done:])
    return "".join(pieces)


def _word_length(text: str, start: int, stop: int) -> int:
    """How many word characters ``text`` has from ``start`` on, before ``stop``."""
    word = _WORD.match(text, start, stop)
    assert word is not None  # noqa: S101 - it matches the empty string
    return word.end() - start


def _places_scripts_meet(text: str) -> int:
    """Byte i (little-endian) non-zero where characters i and i + 1 are letters of two
    scripts, as their UTF-8 lead bytes tell (a superset: :func:`_mixed` decides)."""
    scripts = text.encode("utf-8", "surrogatepass").translate(_SCRIPT_OF_LEAD, _CONTINUATION)
    if sum(bytes([script]) in scripts for script in (_LATIN, _CYRILLIC, _GREEK)) < 2:
        return 0  # one script (Russian without a Latin letter): memchr, no arithmetic
    bits = int.from_bytes(scripts, "little")
    pair = bits | (bits >> 8)  # each character's script bit with its right neighbour's
    # Two of the three bits set: one bit (of bit 0 or 1) for each such place.
    return pair & ((pair >> 1) | (pair >> 2))


def _mixed(word: str) -> bool:
    return _SCRIPTS_MEET.search(word) is not None
