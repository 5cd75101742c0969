"""yEnc as encoders write it, for the tests of files yEncoded in text."""

from __future__ import annotations

ESCAPED = b"\0\n\r="  # the bytes yEnc escapes ("=" and the byte + 64)


def yencoded(data: bytes) -> bytes:
    """yEnc of ``data`` in CRLF lines of 128 characters (129 where an escape ends one)."""
    lines, line = [], bytearray()
    for byte in data:
        char = (byte + 42) % 256
        line += b"=" + bytes([(char + 64) % 256]) if char in ESCAPED else bytes([char])
        if len(line) >= 128:
            lines.append(bytes(line))
            line = bytearray()
    return b"\r\n".join([*lines, bytes(line)])
