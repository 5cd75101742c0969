"""Minimal rewriting: untouched parts stay byte-identical, every result is re-checked."""

from __future__ import annotations

import base64
import binascii
import hashlib
from html import unescape

import pytest

from postwarden_policies import transfer
from postwarden_policies.charsets import decode_as_readers, readers_utf16
from postwarden_policies.facts import Envelope, MessageFacts
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.rewrite import HtmlOptions, RewriteError, RewritePlan, rewrite_body
from postwarden_policies.textparts import TEXT_BUDGET
from postwarden_policies.verdicts import AddHeader, AttachmentStripped, HtmlSanitized, RemoveHeader

OPTIONS = HtmlOptions("keep", frozenset({"http", "https", "mailto", "cid"}))
SANITIZE = RewritePlan(strip=(), sanitize_html=OPTIONS)
EXE = b"MZ\x90\x00" + bytes(range(256)) * 3
HTML = b"<p>Hello caf\xc3\xa9</p><script>alert(1)</script>\r\n"


def _crlf(text: bytes) -> bytes:
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _mixed(html_part: bytes) -> bytes:
    exe = base64.encodebytes(EXE)
    return _crlf(
        b'From: a@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary="B"\n\n'
        b"preamble\n--B\nContent-Type: text/plain\n\nplain text\n--B\n"
        + html_part
        + b'\n--B\nContent-Type: application/pdf; name="invoice.pdf.exe"\n'
        b"Content-Transfer-Encoding: base64\n\n" + exe + b"\n--B--\nepilogue\n"
    )


def _apply(facts: MessageFacts, plan: RewritePlan) -> tuple[MessageFacts, tuple[object, ...]]:
    result = rewrite_body(facts, plan)
    assert result.body is not None
    new_raw = facts.raw[: facts.body_offset] + result.body
    return parse_message(new_raw, facts.envelope), result.changes


def _slot(facts: MessageFacts, index: int) -> bytes:
    part = facts.parts[index]
    return facts.raw[part.header_start : part.body_end]


def test_nothing_to_do_means_no_body() -> None:
    facts = parse_message(_mixed(b"Content-Type: text/html\n\n<p>fine</p>"), Envelope())
    assert rewrite_body(facts, SANITIZE).body is None
    assert rewrite_body(facts, RewritePlan(strip=(), sanitize_html=None)).changes == ()


def test_strip_replaces_only_that_slot() -> None:
    facts = parse_message(_mixed(b"Content-Type: text/html\n\n<p>fine</p>"), Envelope())
    new, changes = _apply(facts, RewritePlan(strip=((3, "block-exe"),), sanitize_html=None))
    assert changes == (
        AttachmentStripped(
            part="3",
            filename="invoice.pdf.exe",
            size=len(EXE),
            sha256=hashlib.sha256(EXE).hexdigest(),
            reason="block-exe",
        ),
    )
    assert [_slot(new, i) for i in (1, 2)] == [_slot(facts, i) for i in (1, 2)]
    assert new.parts[3].content_type == "text/plain" and not new.parts[3].is_attachment
    assert (
        f'"invoice.pdf.exe" ({len(EXE)} bytes, SHA-256 {hashlib.sha256(EXE).hexdigest()})'
        in new.text
    )
    assert new.raw.endswith(b"\r\n--B--\r\nepilogue\r\n")
    assert new.raw[: facts.body_offset] == facts.raw[: facts.body_offset]
    assert b"\n" not in new.raw.replace(b"\r\n", b"")


def test_quoted_printable_html_stays_quoted_printable() -> None:
    qp = b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
    body = b"<p>Hello caf=C3=A9</p><scr=\nipt>alert(1)</script>" + b"<b>long line</b>" * 10
    facts = parse_message(_mixed(qp + body), Envelope())
    new, changes = _apply(facts, SANITIZE)
    part = new.parts[2]
    assert (part.transfer_encoding, part.charset) == ("quoted-printable", "utf-8")
    assert (
        new.raw[part.header_start : part.body_start]
        == facts.raw[facts.parts[2].header_start : facts.parts[2].body_start]
    )
    lines = new.raw[part.body_start : part.body_end].split(b"\r\n")
    assert max(len(line) for line in lines) <= 76
    assert "<p>Hello café</p><b>long line</b>" in new.text and "alert" not in new.text
    (change,) = changes
    assert isinstance(change, HtmlSanitized) and change.removed == (("script", 1),)
    assert [_slot(new, i) for i in (1, 3)] == [_slot(facts, i) for i in (1, 3)]


def test_a_quoted_printable_line_ending_in_a_blank_stays_within_76() -> None:
    # 75 characters and a space: Python's encoder writes "=20" past the limit (78).
    qp = b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
    body = b"<b>" + b"x" * 50 + b"=\n" + b"x" * 22 + b"=20\n<script>alert(1)</script></b>"
    facts = parse_message(_mixed(qp + body), Envelope())
    new, _ = _apply(facts, SANITIZE)
    part = new.parts[2]
    lines = new.raw[part.body_start : part.body_end].split(b"\r\n")
    assert max(len(line) for line in lines) <= 76, lines
    assert "<b>" + "x" * 72 + " \r\n</b>" in new.text


def test_base64_html_keeps_its_line_length() -> None:
    encoded = base64.b64encode(HTML * 5)
    lines = b"\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    part = b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + lines
    facts = parse_message(_mixed(part), Envelope())
    new, _ = _apply(facts, SANITIZE)
    html = new.parts[2]
    body_lines = new.raw[html.body_start : html.body_end].split(b"\r\n")
    assert {len(line) for line in body_lines[:-1]} == {64}
    assert base64.b64decode(b"".join(body_lines)) == b"<p>Hello caf\xc3\xa9</p>\r\n" * 5


@pytest.mark.parametrize("content_type", ["text/html; charset=x-unknown", "text/html"])
def test_top_level_html_keeps_its_headers_and_line_ends(content_type: str) -> None:
    raw = (
        f"From: a@example.com\nContent-Type: {content_type}\n\n".encode()
        + b"<p>\xe9t\xe9</p><script>1</script>\n"
    )
    facts = parse_message(raw, Envelope())
    assert facts.newline == b"\n"
    result = rewrite_body(facts, SANITIZE)
    # No charset readers know: characters go out as references, read as readers read
    # them (windows-1252 where UTF-8 cannot), the header stays as it was.
    assert result.body == b"<p>&#233;t&#233;</p>\n"


def test_html_that_was_only_a_script_comes_out_empty() -> None:
    facts = parse_message(b"From: a@example.com\nContent-Type: text/html\n\n<script>1</script>",
                          Envelope())
    result = rewrite_body(facts, SANITIZE)
    assert result.body == b""
    assert [type(change) for change in result.changes] == [HtmlSanitized]


def test_latin1_part_stays_latin1() -> None:
    part = b"Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
    facts = parse_message(_mixed(part + b"<p>cr\xe8me \xe2\x82</p><iframe></iframe>"), Envelope())
    new, _ = _apply(facts, SANITIZE)
    html = new.parts[2]
    # 0x82 is U+201A to readers, who read the label as windows-1252: not in latin-1
    assert new.raw[html.body_start : html.body_end] == b"<p>cr\xe8me \xe2&#8218;</p>"


def test_top_level_attachment_gets_the_notice_as_body() -> None:
    raw = _crlf(
        b"From: a@example.com\nContent-Type: application/octet-stream; name=x.exe\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(EXE)
    )
    facts = parse_message(raw, Envelope())
    new, changes = _apply(facts, RewritePlan(strip=((0, "r"),), sanitize_html=None))
    assert new.raw[: facts.body_offset] == raw[: facts.body_offset]
    notice = base64.b64decode(new.raw[new.body_offset :])
    assert notice.startswith(b'The attachment "x.exe" (772 bytes, SHA-256 ')
    assert len(changes) == 1


def test_a_top_level_file_becomes_text_its_notice_can_be_read_as() -> None:
    # As "application/pdf" with its disposition, readers offered the notice as the file.
    raw = _crlf(
        b'From: a@example.com\nContent-Type: application/pdf; name="scan.pdf"\n'
        b'Content-Disposition: attachment; filename="scan.pdf"\n\n%PDF-1.7\n'
    )
    plan = RewritePlan(strip=((0, "r"),), sanitize_html=None)
    assert rewrite_body(parse_message(raw, Envelope()), plan).headers == (
        RemoveHeader("Content-Type"), RemoveHeader("Content-Disposition"),
        AddHeader("Content-Type", "text/plain; charset=utf-8"))
    text = raw.replace(b"application/pdf", b"text/plain; charset=us-ascii")
    assert rewrite_body(parse_message(text, Envelope()), plan).headers == ()


@pytest.mark.parametrize(("label", "codec"), [("utf-16", "utf-16"), ("unicode", "utf-16-le")])
def test_a_top_level_notice_its_charset_label_would_garble_goes_in_base64(
    label: str, codec: str
) -> None:
    # The header section stays: under "charset=utf-16" readers would show the ASCII
    # notice as CJK characters, and its UTF-16 holds NUL bytes a 7bit body cannot carry
    # (the message was held). It goes in base64, the header edits saying so.
    raw = _crlf(
        b'From: a@example.com\nContent-Type: text/plain; charset=utf-16; name="a.zip"\n'
        b'Content-Disposition: attachment; filename="a.zip"\n\nPK\x03\x04zzzz\n'
    )
    facts = parse_message(raw.replace(b"utf-16", label.encode(), 1), Envelope())
    result = rewrite_body(facts, RewritePlan(strip=((0, "r"),), sanitize_html=None))
    assert result.headers == (RemoveHeader("Content-Transfer-Encoding"),
                              AddHeader("Content-Transfer-Encoding", "base64"))
    assert result.body is not None
    assert base64.b64decode(result.body).decode(codec).startswith('The attachment "a.zip" (')
    # Letters the label's charset lacks, or a 7bit body cannot carry, or a label Python
    # does not know (readers read it as a superset of ASCII): "?".
    for other, cte, name in (("iso-8859-1", "8bit", "caf\u00e9.zip"),
                             ("iso-8859-1", "7bit", "caf?.zip"), ("us-ascii", "7bit", "caf?.zip"),
                             ("x-bogus", "8bit", "caf?.zip")):
        labelled = raw.replace(b"utf-16", other.encode()).replace(b"a.zip", b"caf\xc3\xa9.zip")
        labelled = labelled.replace(b"\r\n\r\n", f"\r\nContent-Transfer-Encoding: {cte}"
                                    "\r\n\r\n".encode(), 1)
        facts = parse_message(labelled, Envelope())
        body = rewrite_body(facts, RewritePlan(strip=((0, "r"),), sanitize_html=None)).body
        assert body is not None
        assert body.decode("latin-1").startswith(f'The attachment "{name}" (')


def test_a_top_level_notice_in_a_7bit_body_stays_ascii() -> None:
    # A file or an unlabelled text part keeps its headers: 8-bit bytes under 7bit (or no
    # Content-Transfer-Encoding) would reach a next hop without 8BITMIME as they are,
    # and unlabelled text is us-ascii (RFC 2045). A body that carries 8-bit gets UTF-8.
    name = b"filename*=utf-8''%C3%A9vil.exe"
    for ctype, cte, shown in ((b"application/octet-stream", b"", "?vil.exe"),
                              (b"application/octet-stream", b"7bit", "?vil.exe"),
                              (b"text/plain", b"8bit", "?vil.exe"),
                              (b"application/octet-stream", b"8bit", "\u00e9vil.exe")):
        encoding = b"Content-Transfer-Encoding: " + cte + b"\n" if cte else b""
        raw = _crlf(b"From: a@example.com\nContent-Type: " + ctype + b"\n"
                    b"Content-Disposition: attachment; " + name + b"\n" + encoding
                    + b"\nMZ\x90\n")
        body = rewrite_body(parse_message(raw, Envelope()),
                            RewritePlan(strip=((0, "r"),), sanitize_html=None)).body
        assert body is not None
        assert body.decode().startswith(f'The attachment "{shown}" ('), (ctype, cte)


def test_a_top_level_html_notice_shows_the_file_name_as_text() -> None:
    raw = _crlf(
        b'From: a@example.com\nContent-Type: text/html; charset=utf-8\n'
        b'Content-Disposition: attachment; filename="<img src=x>.html"\n\n<p>x</p>\n'
    )
    body = rewrite_body(parse_message(raw, Envelope()),
                        RewritePlan(strip=((0, "r"),), sanitize_html=None)).body
    assert body is not None and b"&lt;img src=x&gt;.html" in body and b"<img" not in body


def test_a_top_level_attached_message_gets_the_notice_as_a_message() -> None:
    # Its header section stays, "message/rfc822": the body must be a message, or the
    # notice's first line reads as a header field that is none (held, not stripped).
    raw = _crlf(
        b"From: a@example.com\nSubject: fwd\nMIME-Version: 1.0\nContent-Type: message/rfc822\n"
        b"\nSubject: inner\nContent-Type: application/octet-stream; name=t.exe\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(EXE)
    )
    facts = parse_message(raw, Envelope())
    new, changes = _apply(facts, RewritePlan(strip=((0, "r"),), sanitize_html=None))
    assert new.raw[: facts.body_offset] == raw[: facts.body_offset] and not new.flags
    assert [(p.path, p.content_type) for p in new.parts] == [("", "message/rfc822"),
                                                             ("1", "text/plain")]
    [notice] = new.parts[1:]
    assert binascii.a2b_qp(new.raw[notice.body_start : notice.body_end]).startswith(
        b'The attachment "(unnamed)" (')
    assert [c.part for c in changes if isinstance(c, AttachmentStripped)] == [""]


def _forwarded() -> MessageFacts:
    exe = base64.encodebytes(EXE)
    raw = _crlf(
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=o\n\n--o\n"
        b"Content-Type: text/plain\n\nsee below\n--o\nContent-Type: message/rfc822\n\n"
        b"Subject: inner\nContent-Type: multipart/mixed; boundary=i\n\n"
        b"--i\nContent-Type: text/plain\n\n"
        b"inner\n--i\nContent-Type: application/octet-stream; name=t.exe\n"
        b"Content-Transfer-Encoding: base64\n\n"
        + exe
        + b"--i--\n--o\nContent-Type: text/plain; name=notes.txt\n\nnotes\n--o--\n"
    )
    return parse_message(raw, Envelope())


def test_strip_inside_a_forwarded_message() -> None:
    facts = _forwarded()
    assert [p.path for p in facts.parts] == ["", "1", "2", "2.1", "2.1.1", "2.1.2", "3"]
    new, changes = _apply(facts, RewritePlan(strip=((5, "exe"),), sanitize_html=None))
    assert [p.path for p in new.parts] == [p.path for p in facts.parts]
    assert [_slot(new, i) for i in (1, 4, 6)] == [_slot(facts, i) for i in (1, 4, 6)]
    assert new.parts[5].content_type == "text/plain"
    assert [c.part for c in changes if isinstance(c, AttachmentStripped)] == ["2.1.2"]


def test_nested_strips_collapse_into_the_outer_one() -> None:
    facts = _forwarded()
    new, changes = _apply(facts, RewritePlan(strip=((5, "exe"), (2, "eml")), sanitize_html=None))
    assert [p.path for p in new.parts] == ["", "1", "2", "3"]
    assert [c.part for c in changes if isinstance(c, AttachmentStripped)] == ["2"]


def _pgp_signed(signed_part: bytes) -> MessageFacts:
    """A well-formed PGP/MIME signature (with a junk signature) around ``signed_part``."""
    raw = _crlf(
        b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s\n\n'
        b"--s\n" + signed_part + b"\n--s\nContent-Type: application/pgp-signature\n\nsig\n--s--\n"
    )
    return parse_message(raw, Envelope())


def test_a_signed_part_to_change_is_held_not_skipped() -> None:
    # Anyone can wrap a file in a well-formed signature (this one is junk): skipping
    # the strip would deliver it; the signature is kept intact by holding instead.
    facts = _pgp_signed(b"Content-Type: application/octet-stream; name=a.exe\n\nMZ")
    with pytest.raises(RewriteError, match="signed part"):
        rewrite_body(facts, RewritePlan(strip=((1, "x"),), sanitize_html=None))
    new, changes = _apply(
        facts, RewritePlan(strip=((1, "x"),), sanitize_html=None, skip_signed=False)
    )
    assert [c.filename for c in changes if isinstance(c, AttachmentStripped)] == ["a.exe"]
    assert b"MZ" not in _slot(new, 1) and b"a.exe" in _slot(new, 1)  # named in the notice
    assert _slot(new, 2) == _slot(facts, 2)  # the signature part is kept as it was


def test_a_signed_part_that_needs_no_change_goes_out_untouched() -> None:
    facts = _pgp_signed(
        b'Content-Type: text/html\n\n<p>Hello <a href="https://example.org/">there</a></p>'
    )
    assert facts.parts[1].in_signed
    assert rewrite_body(facts, SANITIZE).body is None


def test_a_dash_the_sanitizer_decodes_at_a_line_start_stays_a_reference() -> None:
    # nh3 decodes the entity: written as it is, the line "--B--" would close the multipart.
    part = b"Content-Type: text/html\n\n<p>\n&#45;-B--\n</p><script>1</script>"
    facts = parse_message(_mixed(part), Envelope())
    new, changes = _apply(facts, SANITIZE)
    assert [type(change) for change in changes] == [HtmlSanitized]
    assert _slot(new, 2) == b"Content-Type: text/html\r\n\r\n<p>\r\n&#45;-B--\r\n</p>"
    assert [_slot(new, i) for i in (1, 3)] == [_slot(facts, i) for i in (1, 3)]


def test_a_result_that_reparses_differently_is_refused() -> None:
    # Text that fills the budget exactly, then HTML the sanitizer closes (and so
    # lengthens): read back, the result would be cut short, so it is refused.
    html = b"<b><i><u><s><em><strong>x<script></script>"
    filler = b"x" * (TEXT_BUDGET - len(html))
    raw = _mixed(b"Content-Type: text/html\n\n" + html).replace(b"plain text", filler)
    facts = parse_message(raw, Envelope())
    assert not facts.flags
    with pytest.raises(RewriteError, match="parser flags"):
        rewrite_body(facts, SANITIZE)


_UUENCODED = b"plain text\nbegin 644 notes.txt\n" + binascii.b2a_uu(b"notes") + b"`\nend\n"


def test_a_uuencoded_file_stays_as_it_is_when_other_parts_change() -> None:
    raw = _mixed(b"Content-Type: text/html\n\n<script>1</script>").replace(
        b"plain text\r\n", _crlf(_UUENCODED)
    )
    facts = parse_message(raw, Envelope())
    assert [(p.path, p.uuencoded) for p in facts.parts[1:3]] == [("1", False), ("1.1", True)]
    exe = facts.parts.index(next(p for p in facts.parts if p.filename == "invoice.pdf.exe"))
    new, changes = _apply(
        facts, RewritePlan(strip=((exe, "block-exe"),), sanitize_html=OPTIONS)
    )
    assert len(changes) == 2
    assert _slot(new, 2) == _slot(facts, 2) and new.parts[2].filename == "notes.txt"


def test_a_uuencoded_file_cannot_be_stripped_from_its_text() -> None:
    facts = parse_message(_crlf(b"Subject: s\n\n" + _UUENCODED), Envelope())
    with pytest.raises(RewriteError):
        rewrite_body(facts, RewritePlan(strip=((1, "x"),), sanitize_html=None))


def test_out_of_range_indexes_are_ignored() -> None:
    facts = _forwarded()
    assert (
        rewrite_body(facts, RewritePlan(strip=((99, "x"), (-1, "y")), sanitize_html=None)).body
        is None
    )


def _html_part(charset: str, body: bytes) -> MessageFacts:
    part = f"Content-Type: text/html; charset={charset}\n\n".encode()
    return parse_message(_mixed(part + body), Envelope())


@pytest.mark.parametrize(
    ("charset", "body"),
    [
        # Python reads these bytes as text without a tag in it; a reader that
        # does not know the charset falls back to ASCII and runs the script.
        ("cp500", b"<p>hi</p><script>alert(1)</script>"),
        ("utf-32", b"<p>hi</p><script>alert(1)</script>"),
        ("utf-7", b"<p>hi</p><script>alert(1)</script>"),
        ("johab", b"<p>hi \xd9<img src=x onerror=alert(1)></p>"),  # the lead byte eats '<'
        ("iso-2022-jp-2", b"<p>hi \x1b$A<img src=x onerror=alert(1)>\x1b(B</p>"),
        ("unicode-escape", b"<p>hi \\N{<img src=x onerror=alert(1)>}</p>"),
        ("cp437", b"<p>hi</p><script>alert(1)</script>"),  # not a charset readers know
        # Python's ISO-2022-JP switches to kanji on ESC $ ( B, WHATWG's does not.
        ("iso-2022-jp", b"<p>\x1b$(B<img src=x onerror=alert(1)>\x1b(B</p>"),
        # WHATWG's switches to half-width katakana on ESC ( I, where '">' is two
        # letters; Python's reads an error and goes on in ASCII, closing the alt.
        ("iso-2022-jp", b'<img src="cid:x" alt="\x1b(I">\x1b(B" onerror="alert(1)">'),
        # Browsers let a byte order mark overrule the label.
        ("utf-8", b"\xff\xfe" + "<img src=x onerror=alert(1)>".encode("utf-16-le")),
        ("utf-16be", b"\xff\xfe" + "<img src=x onerror=alert(1)>".encode("utf-16-le")),
        ("iso-2022-jp", b"\xef\xbb\xbf<p>\x1b$B<img src=x onerror=alert(1)>\x1b(B</p>"),
        # Spellings Python knows and readers do not: they read the bytes ASCII-based.
        ("utf16", b"<img src=x onerror=alert(1)><script>alert(1)</script>"),
        ("u16", b"<img src=x onerror=alert(1)><script>alert(1)</script>"),
        ("unicodelittleunmarked", b"<img src=x onerror=alert(1)><script>alert(1)</script>"),
        ("iso2022jp", b"<p>\x1b$B<img src=x onerror=alert(1)>\x1b(B</p>"),
        # A UTF-16 label readers know and Python does not: a reader that does not know
        # it either reads ASCII-based, markup where the others read CJK text.
        ("unicode", b"<p>hi</p><script>alert(1)</script>"),
        # UTF-7 as Outlook's MLang names it (Python and WHATWG do not know the label).
        ("x-unicode-2-0-utf-7", b"<p>hi</p>+ADw-script+AD4-alert(1)+ADw-/script+AD4-"),
        # A line end in two-byte mode: ICU's decoder goes back to ASCII there.
        ("iso-2022-jp", b"<p>\x1b$B\n<img src=x onerror=alert(1)>\n\x1b(B</p>"),
        # A lone byte in two-byte mode: Python reads the ESC ( B after it as an error
        # and the tag after that as kanji; WHATWG's goes back to ASCII.
        ("iso-2022-jp", b"<p>\x1b$B!\x1b(B<img src=x onerror=alert(1)></p>"),
    ],
)
def test_html_in_a_charset_readers_do_not_share_becomes_a_notice(
    charset: str, body: bytes
) -> None:
    facts = _html_part(charset, body)
    new, changes = _apply(facts, SANITIZE)
    [change] = [c for c in changes if isinstance(c, HtmlSanitized)]
    assert change.removed == (("unsafe_charset", 1),)
    html = new.parts[2]
    body = new.raw[html.body_start : html.body_end]
    assert b"onerror" not in body and b"script" not in body
    # As readers read it: ASCII, but in the label's UTF-16 where they read that (in
    # ASCII it read as CJK text), and then in base64.
    utf16 = readers_utf16(charset)  # "unicode" too, which only readers know
    assert html.transfer_encoding == ("base64" if utf16 else facts.parts[2].transfer_encoding)
    shown = transfer.decode(body, html.transfer_encoding).decode(utf16 or "ascii")
    assert "could not be sanitized" in shown


@pytest.mark.parametrize(
    "content_type", ["text/html", "text/html; charset=x-unknown", "text/html; charset=latin-1"]
)
def test_html_with_iso_2022_escapes_and_no_charset_readers_know_becomes_a_notice(
    content_type: str,
) -> None:
    # ASCII-based, a title and text; readers guessing the charset read ISO-2022-JP,
    # where ESC $ B makes '">' one kanji: <p title="..." onmouseover="alert(1)">.
    body = b'<p title="\x1b$B">\x1b(B" onmouseover="alert(1)">hi</p>'
    assert 'onmouseover="alert(1)">hi' in body.decode("iso2022_jp")
    facts = parse_message(_mixed(f"Content-Type: {content_type}\n\n".encode() + body), Envelope())
    new, changes = _apply(facts, SANITIZE)
    [change] = [c for c in changes if isinstance(c, HtmlSanitized)]
    assert change.removed == (("unsafe_charset", 1),)
    html = new.parts[2]
    assert b"onmouseover" not in new.raw[html.body_start : html.body_end]


def test_html_whose_meta_tag_alone_names_iso_2022_jp_becomes_a_notice() -> None:
    # Read as the tag says, the tag and the image are kanji; a reader that ignores the
    # <meta charset> form (Thunderbird reads only http-equiv) reads them ASCII-based.
    run = b'<meta/charset=iso-2022-jp><img/src="x"/onerror=alert(1)>'
    facts = parse_message(
        _mixed(b"Content-Type: text/html\n\n\x1b$B" + run + b"\x1b(B<p>hi</p>"), Envelope())
    new, changes = _apply(facts, SANITIZE)
    [change] = [c for c in changes if isinstance(c, HtmlSanitized)]
    assert change.removed == (("unsafe_charset", 1),)
    html = new.parts[2]
    assert b"onerror" not in new.raw[html.body_start : html.body_end]


@pytest.mark.parametrize(
    ("charset", "body"),
    [
        ("iso-2022-jp", b"<p>\x1b$B$3$s$K$A$O\x1b(B</p><script>alert(1)</script>"),
        ("shift_jis", "<p>こんにちは</p><script>alert(1)</script>".encode("shift_jis")),
        ("windows-1252", b"<p>caf\xe9</p><script>alert(1)</script>"),
        # Readers do not know this spelling, but their fallback reads it alike.
        ("latin-1", b"<p>caf\xe9</p><script>alert(1)</script>"),
        ("utf-8", b"\xef\xbb\xbf<p>caf\xc3\xa9</p><script>alert(1)</script>"),
        # UTF-16 only in base64 (below): in 7bit it holds the message (test_sanitize_line_ends).
        # Labels readers know and Python does not (Thai Outlook writes windows-874).
        ("windows-874", "<p>สวัสดี €5</p><script>alert(1)</script>".encode("cp874")),
        ("x-sjis", "<p>①こんにちは</p><script>alert(1)</script>".encode("cp932")),
        ("x-gbk", "<p>你好</p><script>alert(1)</script>".encode("gbk")),
        ("x-mac-cyrillic", "<p>Привет</p><script>alert(1)</script>".encode("mac_cyrillic")),
    ],
)
def test_html_in_a_charset_readers_share_is_sanitized(charset: str, body: bytes) -> None:
    facts = _html_part(charset, body)
    new, changes = _apply(facts, SANITIZE)
    [change] = [c for c in changes if isinstance(c, HtmlSanitized)]
    assert change.removed == (("script", 1),)
    assert "alert(1)" in facts.text and "alert(1)" not in new.text
    # Its label stays; in 7bit, its letters as references.
    html = new.parts[2]
    assert html.charset == facts.parts[2].charset
    shown, kept = new.raw[html.body_start : html.body_end], body.split(b"<script>")[0]
    assert unescape(decode_as_readers(shown, charset, set())) == \
        decode_as_readers(kept, charset, set()).lstrip("\ufeff")


def test_utf16_html_is_sanitized_as_readers_decode_it() -> None:
    part = b"Content-Type: text/html; charset=utf-16\nContent-Transfer-Encoding: base64\n\n"
    encoded = base64.encodebytes("<p>hi</p><script>alert(1)</script>".encode("utf-16"))
    facts = parse_message(_mixed(part + encoded), Envelope())
    new, changes = _apply(facts, SANITIZE)
    [change] = [c for c in changes if isinstance(c, HtmlSanitized)]
    assert change.removed == (("script", 1),)
    html = new.parts[2]
    decoded = base64.b64decode(new.raw[html.body_start : html.body_end]).decode("utf-16")
    assert decoded == "<p>hi</p>"


@pytest.mark.parametrize(
    ("html", "handler"),
    [
        # nh3 writes the valueless attribute as alt="": one "=" more for the one it removed
        ('<img src="cid:logo" alt onerror="alert(1)">', b"onerror"),
        ('<table><tr><td nowrap onclick="alert(1)">x</td></tr></table>', b"onclick"),
        # the value, unescaped by nh3, reads like the attribute it removed
        ('<p title="&#32;onclick=x" onclick="alert(1)">x</p>', b'onclick="alert'),
        # the tree builder clones the misnested <b title>, and its "=" with it
        ('<b title="x" onclick="alert(1)"><p>a</b>b</p>', b"onclick"),
    ],
)
def test_html_goes_out_sanitized_whatever_the_count_of_removals_says(
    html: str, handler: bytes
) -> None:
    facts = parse_message(_crlf(b"Content-Type: text/html\n\n" + html.encode()), Envelope())
    result = rewrite_body(facts, SANITIZE)
    assert result.body is not None
    assert handler not in result.body
    assert [type(change) for change in result.changes] == [HtmlSanitized]


def test_notices_of_files_in_an_alternative_go_first() -> None:
    """Readers show the last alternative they can show: a notice in a file's place
    there (but first) would be it. Notices moved to the front, the rest in order."""
    facts = parse_message(_crlf(
        b'Subject: s\nContent-Type: multipart/mixed; boundary="M"\n\n--M\n'
        b'Content-Type: multipart/alternative; boundary="A"\n\n'
        b"--A\nContent-Type: application/pdf; name=a.pdf\n\nAAA\n"
        b"--A\nContent-Type: text/html\n\n<p>body</p><script>x</script>\n"
        b"--A\nContent-Type: application/pdf; name=b.pdf\n\nBBB\n"
        b"--A--\n--M\nContent-Type: text/plain\n\nafter\n--M--\n"), Envelope())
    plan = RewritePlan(strip=((2, "big"), (4, "big")), sanitize_html=OPTIONS)
    new, changes = _apply(facts, plan)
    assert [c.part for c in changes] == ["1.1", "1.3", "1.2"]  # as the message had them
    assert [(p.path, p.content_type) for p in new.parts] == [
        ("", "multipart/mixed"), ("1", "multipart/alternative"), ("1.1", "text/plain"),
        ("1.2", "text/plain"), ("1.3", "text/html"), ("2", "text/plain")]
    assert b"b.pdf" in _slot(new, 2) and b"a.pdf" in _slot(new, 3)
    assert new.raw[new.parts[4].body_start : new.parts[4].body_end] == b"<p>body</p>"
    assert _slot(new, 5) == _slot(facts, 5)


@pytest.mark.parametrize("cte", [b"", b"Content-Transfer-Encoding: base64\n"])
def test_a_message_news_part_is_read_and_sanitized_as_the_message_it_holds(cte: bytes) -> None:
    # Thunderbird shows a message/news part as it shows message/rfc822: the message in
    # it, its HTML inline. Read as an opaque leaf, its HTML went out unsanitized and its
    # files unlisted.
    inner = _crlf(b"Subject: inner\nContent-Type: text/html\n\n") + HTML
    raw = _crlf(b"From: a@example.com\nContent-Type: multipart/mixed; boundary=o\n\n--o\n"
                b"Content-Type: message/news\n" + cte + b"\n") + (
        base64.encodebytes(inner) if cte else inner) + b"\r\n--o--\r\n"
    facts = parse_message(raw, Envelope())
    assert [(p.path, p.content_type) for p in facts.parts] == [
        ("", "multipart/mixed"), ("1", "message/news"), ("1.1", "text/html")]
    assert ("encoded_message" in facts.flags) is bool(cte)
    new, changes = _apply(facts, SANITIZE)
    assert [c.part for c in changes if isinstance(c, HtmlSanitized)] == ["1.1"]
    assert [p.path for p in new.parts] == ["", "1", "1.1"]
    carried = new.raw[new.parts[1].body_start : new.parts[1].body_end]
    shown = base64.b64decode(carried) if cte else carried
    assert b"Hello" in shown and b"<script>" not in shown
