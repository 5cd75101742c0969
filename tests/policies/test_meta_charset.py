"""An HTML part without a charset parameter is read in the charset its <meta> tag names,
as the HTML standard's prescan and Thunderbird read it."""

from __future__ import annotations

import pytest

from postwarden_policies.facts import Envelope
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.rewrite import HtmlOptions, RewritePlan, rewrite_body

from .policy_helpers import MAIL_HEAD, body_rule_matches

SANITIZE = RewritePlan(strip=(), sanitize_html=HtmlOptions("keep", frozenset({"https"})))
HTTP_EQUIV = '<meta http-equiv="Content-Type" content="text/html; charset={}">'


def _html(content_type: str, head: str, text: str, charset: str, bom: str = "") -> bytes:
    return (
        f"{MAIL_HEAD}Content-Type: {content_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{bom}<html><head>{head}</head><body><p>{text}</p></body></html>\r\n"
    ).encode(charset)


@pytest.mark.parametrize(
    ("head", "text", "charset"),
    [
        (HTTP_EQUIV.format("windows-1252"), "Café crème", "cp1252"),
        ("<meta charset=koi8-r>", "Привет", "koi8-r"),
        ("<META CHARSET='Shift_JIS'>", "こんにちは", "shift_jis"),
        # a tag naming a label readers do not know is passed over
        ("<meta charset=latin-1><meta charset=koi8-r>", "Привет", "koi8-r"),
    ],
)
def test_html_labelled_by_its_meta_tag_keeps_its_letters(
    head: str, text: str, charset: str
) -> None:
    facts = parse_message(_html("text/html", head, text, charset), Envelope())
    assert text in facts.text
    result = rewrite_body(facts, SANITIZE)  # the <meta> goes; the part stays labelled as it was
    assert result.body is not None
    references = text.encode("ascii", "xmlcharrefreplace").decode()
    assert result.body == f"<p>{references}</p>\r\n".encode()


def test_body_rules_read_html_in_its_meta_charset() -> None:
    raw = _html("text/html", "<meta charset=windows-1251>", "Ваш пароль истёк", "cp1251")
    assert body_rule_matches("пароль", raw)


@pytest.mark.parametrize(
    ("content_type", "head", "bom"),
    [
        # the Content-Type's charset overrules the tag's
        ("text/html; charset=utf-8", "<meta charset=windows-1251>", ""),
        # a UTF-16 label in a tag read ASCII-based is read as UTF-8
        ("text/html", "<meta charset=utf-16le>", ""),
        # a label readers do not know is ignored
        ("text/html", "<meta charset=latin-1>", ""),
        # content names the charset only beside http-equiv
        ("text/html", '<meta name="keywords" content="charset=windows-1251">', ""),
        # a byte order mark overrules the tag
        ("text/html", "<meta charset=windows-1251>", "\ufeff"),
    ],
)
def test_the_tag_names_the_charset_only_where_readers_take_it(
    content_type: str, head: str, bom: str
) -> None:
    text = "Ваш пароль"
    facts = parse_message(_html(content_type, head, text, "utf-8", bom), Envelope())
    assert text in facts.text
