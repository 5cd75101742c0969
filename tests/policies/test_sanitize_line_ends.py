"""Sanitized HTML keeps its line ends, set in the text: never in the encoded bytes."""

from __future__ import annotations

import base64
import codecs
import quopri
import re

import pytest

from postwarden_policies import Accept, AddHeader, RemoveHeader, evaluate_message, sanitize
from postwarden_policies.facts import Envelope, MessageFacts
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.rewrite import HtmlOptions, RewritePlan, rewrite_body

from .policy_helpers import policy

SANITIZE = RewritePlan(strip=(), sanitize_html=HtmlOptions("keep", frozenset({"https"})))
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _html_message(html: bytes, charset: str, cte: str = "base64") -> MessageFacts:
    body = base64.encodebytes(html).replace(b"\n", b"\r\n") if cte == "base64" else html
    head = (
        "From: a@elsewhere.test\r\nTo: alice@example.com\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/html; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    )
    return parse_message(head.encode() + body, Envelope())


def _as_a_reader_reads(facts: MessageFacts) -> str:
    """The delivered HTML part decoded as a WHATWG reader does: a BOM overrules the label."""
    result = rewrite_body(facts, SANITIZE)
    assert result.body is not None
    assert (facts.parts[0].transfer_encoding == "base64"
            or AddHeader("Content-Transfer-Encoding", "base64") in result.headers)
    new = parse_message(facts.raw[: facts.body_offset] + result.body, facts.envelope)
    [part] = new.parts
    assert part.charset is not None
    data = base64.b64decode(new.raw[part.body_start : part.body_end])
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, "replace")
    return data.decode(part.charset, "replace")


def test_utf16_text_holding_a_crlf_byte_pair_is_not_shifted_into_markup() -> None:
    hidden = "<img src=x onerror=alert(1)> "
    smuggled = "".join(chr(ord(c) << 8) for c in hidden)  # CJK text: U+3C00 U+6900 ...
    # U+0A0D is 0D 0A in UTF-16LE: the encoded bytes hold b"\r\n", the text no line end.
    html = "\ufeff<p>a\u0a0d</p><script>x()</script><p>" + smuggled + "</p>"
    shown = _as_a_reader_reads(_html_message(html.encode("utf-16-le"), "utf-16"))
    assert "onerror" not in shown and "<img" not in shown
    assert shown == "<p>a\u0a0d</p><p>" + smuggled + "</p>"


@pytest.mark.parametrize("charset", ["utf-8", "utf-16", "utf-16le"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"], ids=["crlf", "lf"])
def test_sanitized_html_keeps_its_line_ends(charset: str, newline: str) -> None:
    text = "<p>one</p>\n<p>caf\u00e9 \u65e5\u672c</p>\n"
    html = (text + "<script>x()</script>\n").replace("\n", newline)
    shown = _as_a_reader_reads(_html_message(html.encode(charset), charset))
    assert shown == (text + "\n").replace("\n", newline)


def test_utf16_html_sent_7bit_goes_out_in_base64() -> None:
    # As 7bit it would have to be ASCII, which does not read as its label says: it was
    # held. In base64 it reads as cleaned, and the message's header section says so.
    html = "<p>hi</p><script>x()</script>".encode("utf-16")
    facts = _html_message(html, "utf-16", cte="7bit")
    assert _as_a_reader_reads(facts) == "<p>hi</p>"
    verdict = evaluate_message(policy("sanitize: {html: true}\n"), facts.raw, Envelope())
    assert verdict.decision == Accept()
    assert AddHeader("Content-Transfer-Encoding", "base64") in verdict.edits
    assert RemoveHeader("Content-Transfer-Encoding") in verdict.edits


_SMUGGLED = "".join(chr(ord(c) << 8) for c in "<img src=x onerror=alert(1)> ")  # CJK text


@pytest.mark.parametrize("cte", ["8bit", "binary", "7bit", "quoted-printable"])
@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_html_in_lines_goes_out_in_base64_not_shifted_into_markup(
    cte: str, codec: str
) -> None:
    # No LF byte: the part passes Postfix as it is. nh3 writes "&#10;" as LF, and the
    # line end Postfix completes it to (CRLF) shifted the rest by a byte: "<img onerror".
    cleaned = "<p>a&#10;b</p><script>x()</script><p>" + _SMUGGLED + "</p>"
    # A CRLF byte pair inside one character: local delivery's LF alone shifts it too.
    kept = "<p>a\u0a0d" + _SMUGGLED + "</p>"
    # Whichever way the sanitizer reads such a pair (in lines, as local delivery would
    # leave it: without the CR Postfix adds before a lone LF; in quoted-printable a hard
    # line break, which decoders write as they write line ends), the reader reads that.
    for html in (cleaned, kept):
        data = html.encode(codec)
        body = quopri.encodestring(data) if cte == "quoted-printable" else data
        facts = _html_message(body, codec.replace("-le", "le").replace("-be", "be"), cte)
        read = _as_a_reader_reads(facts)
        assert re.search(r"<[^<>]*onerror|<script", read) is None  # as text, if at all
        if html == cleaned:
            assert read == "<p>a\nb</p><p>" + _SMUGGLED + "</p>"


@pytest.mark.parametrize("label", ["utf-16le", "unicode"])  # "unicode": readers' alone
@pytest.mark.parametrize("cte", ["base64", "8bit"])
def test_the_notice_for_utf16_html_readers_read_otherwise_reads_as_its_label_says(
    cte: str, label: str
) -> None:
    # A big-endian mark under a little-endian label: readers follow the mark, so the
    # part gets the unsafe_charset notice. In ASCII under that label it read as CJK text.
    html = codecs.BOM_UTF16_BE + "<p>hi</p><script>x()</script>".encode("utf-16-be")
    facts = _html_message(html, label, cte)
    result = rewrite_body(facts, SANITIZE)
    assert result.body is not None
    assert dict(result.changes[0].removed) == {"unsafe_charset": 1}  # type: ignore[attr-defined]
    assert base64.b64decode(result.body).decode("utf-16-le") == sanitize.removed_whole("")[0]
