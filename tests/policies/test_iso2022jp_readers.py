"""ISO-2022-JP that read_as_readers lets through reads as WHATWG's decoder reads it.

An HTML part it passes may be delivered byte for byte, so every quote, "<", ">",
"=" and blank Python's decoder shows must be one a reader's shows, in order. The
reference below is the WHATWG Encoding Standard's ISO-2022-JP decoder, with every
character outside ASCII written as one placeholder (markup is ASCII).
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from postwarden_policies.charsets import decode_bytes, read_as_readers

_ESCAPES = {b"(B": "ascii", b"(J": "roman", b"(I": "katakana", b"$@": "lead", b"$B": "lead"}
_MARKUP = "<>\"'= \t\n\r"


def _whatwg(data: bytes) -> str:
    """What a reader shows, characters outside ASCII as "*"."""
    out: list[str] = []
    state, i = "ascii", 0
    while i < len(data):
        byte = data[i]
        if byte == 0x1B:
            switch = _ESCAPES.get(data[i + 1 : i + 3])
            if state == "trail":  # a lone lead byte: an error, then the escape
                out.append("*")
            if switch is None:  # an error; the bytes after ESC are read again
                out.append("*")
                state = "lead" if state == "trail" else state
                i += 1
                continue
            state, i = switch, i + 3
            continue
        if state in ("ascii", "roman") and byte < 0x80 and byte not in (0x0E, 0x0F):
            out.append(chr(byte) if chr(byte) in _MARKUP else "*")
        elif state == "lead" and 0x21 <= byte <= 0x7E:
            state = "trail"
            i += 1
            continue
        elif state == "trail":
            state = "lead"
            out.append("*")
        else:
            out.append("*")
        i += 1
    return "".join(out)


def _markup(text: str) -> str:
    return "".join(char for char in text if char in _MARKUP)


_PIECES = [
    b"\x1b$B", b"\x1b$@", b"\x1b(B", b"\x1b(J", b"\x1b(I", b"\x1b$(B", b"\x1b", b"<", b">",
    b'"', b"'", b"=", b" ", b"\n", b"!", b"!!", b"$3", b"a", b"\x0e", b"\x80", b"\x7f", b"\\",
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12).map(b"".join))
@example(b'<p title="\x1b(I">\x1b(B" onmouseover="x">')
@example(b"<p>\x1b$B!\x1b(B<img src=x onerror=x></p>")
def test_what_read_as_readers_passes_shows_readers_the_same_markup(data: bytes) -> None:
    if read_as_readers("iso-2022-jp", data):
        assert _markup(decode_bytes(data, "iso-2022-jp", set())) == _markup(_whatwg(data))
