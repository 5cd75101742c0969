"""BinHex 4.0 as encoders write it, for the tests of files BinHexed in text."""

from __future__ import annotations

import base64
import re

BEGIN = b"(This file must be converted with BinHex 4.0)"
_DIGITS = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
# Six bits a character, as base64 codes them, in BinHex's characters.
_AS_BINHEX = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", _DIGITS)
_RUN = re.compile(rb"(.)\1{0,254}", re.DOTALL)


def binhexed(name: bytes, data: bytes, runs: bool = False) -> bytes:
    """BinHex 4.0 of a file: the begin line, then its header (name, type, creator,
    flags, fork lengths, CRC), data fork and its CRC, run-length coded (0x90 escaped as
    0x90 0; with ``runs``, a byte three to 255 times in a row as the byte, 0x90 and the
    count too), six bits a character between colons, in CRLF lines of 64."""
    stream = header(name, len(data)) + data + bytes(2)
    return binhex_block(b"".join(_coded(run.group(), runs) for run in _RUN.finditer(stream)))


def header(name: bytes, fork: int) -> bytes:
    """A file's header, before its data fork of ``fork`` bytes."""
    return (bytes([len(name)]) + name + b"\0" + b"APPLdosa" + bytes(2) + fork.to_bytes(4, "big")
            + bytes(4) + bytes(2))


def binhex_block(coded: bytes) -> bytes:
    """The begin line and the lines of a run-length coded file, whatever it codes."""
    chars = b":" + base64.b64encode(coded).rstrip(b"=").translate(_AS_BINHEX) + b":"
    lines = [chars[at : at + 64] for at in range(0, len(chars), 64)]
    return BEGIN + b"\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"


def _coded(run: bytes, runs: bool) -> bytes:
    byte = b"\x90\0" if run[0] == 0x90 else run[:1]
    return byte + b"\x90" + bytes([len(run)]) if runs and len(run) >= 3 else byte * len(run)
