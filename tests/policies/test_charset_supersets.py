"""Labels readers decode with a superset of Python's codec for them (the WHATWG Encoding
Standard reads us-ascii and iso-8859-1 as windows-1252): read as readers show them."""

from __future__ import annotations

import base64
import encodings.aliases
import html

import pytest

from postwarden_policies import charsets
from postwarden_policies.charsets import _text_codec, decode_bytes
from postwarden_policies.facts import Envelope
from postwarden_policies.headers import decode_words
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.rewrite import HtmlOptions, RewritePlan, rewrite_body

from .policy_helpers import MAIL_HEAD, body_rule_matches

SANITIZE = RewritePlan(strip=(), sanitize_html=HtmlOptions("keep", frozenset({"https"})))


def _html(charset: str, body: bytes) -> bytes:
    head = f"{MAIL_HEAD}Content-Type: text/html; charset={charset}\r\n"
    return head.encode() + b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n"


@pytest.mark.parametrize(
    ("charset", "shown"),
    [
        ("us-ascii", "Café “quoted” €"),
        ("iso-8859-1", "Café “quoted” €"),
        ("latin1", "Café “quoted” €"),
        ("iso-8859-9", "Café “quoted” €"),
        ("tis-620", "Caf\u0e49 \u201cquoted\u201d €"),
    ],
)
def test_sanitized_html_keeps_the_letters_readers_show(charset: str, shown: str) -> None:
    raw = _html(charset, b"<p>Caf\xe9 \x93quoted\x94 \x80</p><script>x</script>")
    facts = parse_message(raw, Envelope())
    assert shown in facts.text
    result = rewrite_body(facts, SANITIZE)
    assert result.body is not None
    new = parse_message(raw[: facts.body_offset] + result.body, Envelope())
    assert html.unescape(new.text) == f"<p>{shown}</p>\r\n"


def test_body_rules_read_the_letters_readers_show() -> None:
    assert body_rule_matches("contraseña", _html("us-ascii", b"Su contrase\xf1a ha caducado"))


@pytest.mark.parametrize(
    ("charset", "written_as", "text"),
    [
        # NEC's circled digit; the pound and minus signs, which Python's shift_jis
        # writes as bytes readers read as their fullwidth forms
        ("shift_jis", "cp932", "会議室①番 &pound;5 &minus;2"),
        ("euc-kr", "cp949", "똠방각하"),  # UHC syllables
        ("gb2312", "gb18030", "镕・—"),
        ("gbk", "gb18030", "À😀"),  # four bytes each, of digits in the middle
        ("big5", "big5hkscs", "①Ê̄═"),  # ETEN and HKSCS
    ],
)
def test_sanitized_cjk_html_keeps_the_characters_readers_show(
    charset: str, written_as: str, text: str
) -> None:
    raw = _html(charset, f"<p>{text}</p><script>x</script>".encode(written_as))
    facts = parse_message(raw, Envelope())
    shown = html.unescape(text)
    assert shown in html.unescape(facts.text)
    result = rewrite_body(facts, SANITIZE)
    assert result.body is not None
    new = parse_message(raw[: facts.body_offset] + result.body, Envelope())
    assert html.unescape(new.text) == f"<p>{shown}</p>\r\n"


# "会議室①番 纊": NEC's circled digit (row 13) and an IBM kanji (row 89), which readers
# read (WHATWG's index jis0208) and Python's EUC-JP and ISO-2022-JP codecs do not.
_JAPANESE = "会議室①番 纊"
_JIS_EXTENDED = {
    "iso-2022-jp": b"\x1b$B2q5D<<-!HV\x1b(B \x1b$By!\x1b(B",
    "euc-jp": b"\xb2\xf1\xb5\xc4\xbc\xbc\xad\xa1\xc8\xd6 \xf9\xa1",
}


@pytest.mark.parametrize("charset", sorted(_JIS_EXTENDED))
def test_sanitized_japanese_html_keeps_nec_and_ibm_characters(charset: str) -> None:
    raw = _html(charset, b"<p>" + _JIS_EXTENDED[charset] + b"</p><script>x</script>")
    facts = parse_message(raw, Envelope())
    assert _JAPANESE in facts.text
    result = rewrite_body(facts, SANITIZE)
    assert result.body is not None
    new = parse_message(raw[: facts.body_offset] + result.body, Envelope())
    assert html.unescape(new.text) == f"<p>{_JAPANESE}</p>\r\n"


@pytest.mark.parametrize("charset", sorted(_JIS_EXTENDED))
def test_body_rules_read_nec_and_ibm_characters(charset: str) -> None:
    assert body_rule_matches("①番 纊", _html(charset, _JIS_EXTENDED[charset]))


def test_an_unassigned_iso_2022_jp_pair_is_one_replacement_character() -> None:
    data = b"\x1b$B)!\x1b(Bx"  # row 9 has no characters
    assert parse_message(_html("iso-2022-jp", data), Envelope()).text == "\ufffdx\r\n"


def test_a_subject_in_iso_2022_jp_reads_nec_and_ibm_characters() -> None:
    word = base64.b64encode(_JIS_EXTENDED["iso-2022-jp"]).decode()
    flags: set[str] = set()
    assert decode_words(f"=?ISO-2022-JP?B?{word}?=", flags) == _JAPANESE
    assert not flags



# ASCII bytes that stateful codecs (UTF-7, ISO-2022, HZ) and EBCDIC read otherwise.
_ASCII_SAMPLES = (b"<p>plain text</p>\r\n", b"+AGEAYgBj- <b>",
                  b"\x1b$B<p>\x1b(B ~{<p>~} \x0e<p>\x0f")


# Python's codecs that decode bytes to text (not base64_codec, zlib_codec...).
_TEXT_CODECS = sorted(label for label in {*encodings.aliases.aliases.values(), "us-ascii",
                                          "utf-7", "hz", "cp037", "iso2022_jp"}
                      if _text_codec(label) is not None)


@pytest.mark.parametrize("label", _TEXT_CODECS)
def test_ascii_text_decodes_as_its_codec_reads_it(label: str) -> None:
    """decode_bytes takes ASCII text as ASCII only where its codec reads it so."""
    info = _text_codec(label)
    assert info is not None
    for data in _ASCII_SAMPLES:
        try:
            direct = info.decode(data, charsets._ERRORS.get(info.name, "replace"))[0]
        except (UnicodeError, ValueError, TypeError):
            continue  # decode_bytes reads it as undeclared: not this test's
        assert decode_bytes(data, label, set()) == direct
