"""Sanitized HTML of a 7bit or 8bit part stays within SMTP's 998 octets a line: nh3
writes "<", ">" and "&" as references, and Postfix's SMTP client would break a longer
line anywhere (inside a tag or a URL)."""

from __future__ import annotations

import email

import pytest

from postwarden_policies.facts import Envelope
from postwarden_policies.htmllines import LINE_LIMIT, within_line_limit
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.rewrite import HtmlOptions, RewritePlan, RewriteResult, rewrite_body

SANITIZE = RewritePlan(strip=(), sanitize_html=HtmlOptions("keep", frozenset({"https"})))
# 975 octets, 1,622 once "<" and "&" are written as references.
LINE = "<p>" + "a < b & c " * 95 + "</p>"


def _octets(text: str, charset: str = "us-ascii", newline: str = "\r\n") -> list[int]:
    return [len(line.encode(charset)) for line in text.split(newline)]


def test_a_line_past_the_limit_breaks_at_spaces_only() -> None:
    html = ("<p>" + "a &lt; b &amp; c " * 95 + "</p>") * 2
    out = within_line_limit(html, "us-ascii", "\r\n")
    assert max(_octets(out)) <= LINE_LIMIT < max(_octets(html))
    assert out.replace("\r\n", " ") == html  # a space became each line end, nothing else


@pytest.mark.parametrize("html", [
    "<pre>" + "a b " * 400 + "</pre>",  # shown with its line breaks as written
    "<p>" + " --x" * 400 + "</p>",  # a line starting "--" reads as a delimiter's prefix
], ids=["pre", "before a dash"])
def test_where_a_line_end_would_change_something_the_line_stays_long(html: str) -> None:
    assert within_line_limit(html, "us-ascii", "\n") == html


def test_an_attribute_value_keeps_its_spaces() -> None:
    value = "a b " * 400
    out = within_line_limit(f'<img alt="{value}">', "us-ascii", "\n")
    assert out == f'<img\nalt="{value}">'  # the one space outside it


def test_between_attributes_and_in_multibyte_text_the_octets_count() -> None:
    tags = '<a href="https://x.test/?a=1&amp;b=2" title="a b c">' * 60
    assert max(_octets(within_line_limit(tags, "us-ascii", "\n"), newline="\n")) <= LINE_LIMIT
    text = "caf\u00e9 " * 300  # 1,500 characters: 1,800 octets in UTF-8, 1,500 in Latin-1
    utf8, latin1 = (within_line_limit(text, charset, "\n") for charset in ("utf-8", "latin-1"))
    assert max(_octets(utf8, "utf-8", "\n")) <= LINE_LIMIT
    assert max(_octets(latin1, "latin-1", "\n")) <= LINE_LIMIT
    assert len(utf8.split("\n")[0]) < len(latin1.split("\n")[0])  # octets, not characters


@pytest.mark.parametrize("cte", ["7bit", "8bit"])
def test_a_sanitized_part_sent_as_it_is_keeps_within_the_limit(cte: str) -> None:
    head = ("From: a@elsewhere.test\r\nTo: alice@example.com\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/html; charset=us-ascii\r\nContent-Transfer-Encoding: {cte}"
            "\r\n\r\n")
    facts = parse_message((head + LINE + "<script>x</script>\r\n").encode(), Envelope())
    result = rewrite_body(facts, SANITIZE)
    assert result.body is not None
    assert max(map(len, result.body.split(b"\r\n"))) <= LINE_LIMIT
    assert b"a &lt; b &amp; c" in result.body and b"<script" not in result.body


def test_where_css_may_keep_whitespace_only_tags_break() -> None:
    # nh3 keeps white-space in a style: a line end in that text would show as a break.
    text = "a b " * 300
    html = f'<div style="white-space: pre-wrap">{text}</div>' + '<a href="x" title="y">z</a>' * 30
    out = within_line_limit(html, "us-ascii", "\n")
    assert text in out and out != html  # the text as it was; a tag's space broke


def test_an_iso_2022_jp_line_is_measured_in_its_octets() -> None:
    # 249 characters, 1,096 octets: escape sequences at every change of script.
    html = "<p>" + "\u3042 " * 121 + "</p>"
    out = within_line_limit(html, "iso-2022-jp", "\n")
    assert max(_octets(out, "iso-2022-jp", "\n")) <= LINE_LIMIT


def test_a_part_this_filter_broke_into_lines_passes_a_second_one_untouched() -> None:
    # nh3 reads the line ends we put between attributes as spaces, so the HTML is not
    # "as it was" to it; broken again, it comes out byte for byte as it came: no change
    # to record, no body to replace (the next hop of a message sanitized here). The
    # part ends at its delimiter line, so its text has no line end of its own.
    head = (b"From: a@elsewhere.test\r\nTo: alice@example.com\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/html; charset=us-ascii\r\n\r\n")
    links = b'<a href="https://x.test/" onclick="x()">y</a>' * 40
    raw = head + links + b"\r\n--b--\r\n"
    once = rewrite_body(parse_message(raw, Envelope()), SANITIZE)
    assert once.body is not None and b"<a\r\nhref=" in once.body  # broken in a tag
    again = rewrite_body(parse_message(raw[:raw.index(b"--b")] + once.body, Envelope()),
                         SANITIZE)
    assert again == RewriteResult(body=None, changes=())


def test_a_line_with_no_space_to_break_at_makes_the_part_quoted_printable() -> None:
    # nh3 writes each "&" as "&amp;": 900 octets become 1,780, and no space in a URL.
    url = "https://shop.test/?" + "a=1&" * 220
    head = ("From: a@elsewhere.test\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            "Content-Type: text/html; charset=us-ascii\r\n"
            "Content-Transfer-Encoding:\r\n 7bit\r\n\r\n")  # folded
    raw = (head + f'<a href="{url}">x</a><script>y</script>\r\n--b--\r\n').encode()
    result = rewrite_body(parse_message(raw, Envelope()), SANITIZE)
    assert result.body is not None and result.headers == ()
    assert max(map(len, result.body.split(b"\r\n"))) <= LINE_LIMIT
    again = parse_message(raw[: raw.index(b"--b")] + result.body, Envelope())
    assert again.parts[1].transfer_encoding == "quoted-printable"
    assert result.body.lower().count(b"content-transfer-encoding") == 1
    assert url.replace("&", "&amp;").encode() in email.message_from_bytes(
        raw[: raw.index(b"--b")] + result.body).get_payload(0).get_payload(decode=True)
