"""A prefixed Subject's raw 8-bit words (not UTF-8) go as RFC 2047 encoded words in
UTF-8 of the text readers showed for them (``Header.value``'s reading: the charset the
message declares, else windows-1252), not of the bytes under ISO-8859-1, which showed a
KOI8-R or Shift_JIS Subject garbled once prefixed."""

from __future__ import annotations

import email.header
import re

import pytest

from postwarden_policies import ChangeHeader, Envelope, evaluate, parse_message
from postwarden_policies.rawwords import encode_raw_words

from .policy_helpers import policy

TAG = policy("tag_flags: false\nrules:\n  - name: tag\n    then: {subject_prefix: '[EXT] '}\n")
ENCODED_WORD = re.compile(r"=\?UTF-8\?Q\?([^?]*)\?=")


def _shown(value: str) -> str:
    """The value as a reader shows it."""
    return str(email.header.make_header(email.header.decode_header(value)))


def _prefixed(subject: bytes, charset: str | None) -> tuple[str, str]:
    """The prefixed Subject's value, and the Subject as the policy library read it."""
    head = b"Subject: " + subject + b"\r\n"
    if charset:
        head += b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n"
    facts = parse_message(head + b"\r\nbody\r\n", Envelope())
    (edit,) = evaluate(TAG, facts).edits
    assert isinstance(edit, ChangeHeader)
    return edit.value, facts.headers[0].value


@pytest.mark.parametrize(("text", "charset"), [
    pytest.param("Привет из Москвы", "koi8-r", id="koi8-r"),
    pytest.param("会議の資料は明日", "shift_jis", id="shift_jis"),
    pytest.param("회의 자료", "euc-kr", id="euc-kr"),
    pytest.param("Grüße – fällig", "us-ascii", id="windows-1252-undeclared"),
])
def test_a_prefixed_raw_subject_shows_what_readers_read(text: str, charset: str) -> None:
    raw = text.encode("cp1252" if charset == "us-ascii" else charset)
    value, read = _prefixed(b"Betreff " + raw, charset)
    assert read == f"Betreff {text}"
    assert value.isascii()
    assert _shown(value) == f"[EXT] Betreff {text}"


@pytest.mark.parametrize(("charset", "expected"), [
    pytest.param(None, "für Grüße fällig", id="undeclared"),
    pytest.param("us-ascii", "fÃ¼r GrÃ¼ÃŸe fällig", id="declared"),  # read as windows-1252
])
def test_utf_8_words_beside_latin_1_ones_read_as_the_whole(charset: str | None,
                                                          expected: str) -> None:
    value, read = _prefixed("für Grüße".encode() + b" f\xe4llig", charset)
    assert read == expected
    assert value.isascii()
    assert _shown(value) == f"[EXT] {expected}"


def test_each_encoded_word_holds_whole_characters_within_75_octets() -> None:
    # A reader may decode each word alone: none may cut a character in two.
    value, _ = _prefixed("会議".encode("shift_jis") * 40, "shift_jis")
    words = ENCODED_WORD.findall(value)
    assert len(words) > 1
    for word in words:
        assert len(f"=?UTF-8?Q?{word}?=") <= 75
        email.header.decode_header(f"=?UTF-8?Q?{word}?=")[0][0].decode("utf-8")
    assert _shown(value) == "[EXT] " + "会議" * 40


@pytest.mark.parametrize(("value", "sent"), [
    pytest.param("[EXT] f\udce4llig", "[EXT] =?UTF-8?Q?f=C3=A4llig?=", id="one-word"),
    # Readers drop the blanks between encoded words: adjacent raw words share one.
    pytest.param("gr\udcfc\udcdfe aus M\udcfcnchen", "=?UTF-8?Q?gr=C3=BC=C3=9Fe?= aus "
                 "=?UTF-8?Q?M=C3=BCnchen?=", id="ascii-word-between"),
    pytest.param("gr\udcfc\udcdfe\t\udce4", "=?UTF-8?Q?gr=C3=BC=C3=9Fe=09=C3=A4?=",
                 id="adjacent-raw-words"),
    # Beside an encoded word the text had, the blank between goes inside ours.
    pytest.param("=?utf-8?q?x?= \udce4 =?utf-8?q?y?=",
                 "=?utf-8?q?x?= =?UTF-8?Q?_=C3=A4_?= =?utf-8?q?y?=", id="beside-encoded-words"),
    pytest.param("f\udce4llig\r\n n\udce4chste", "=?UTF-8?Q?f=C3=A4llig_n=C3=A4chste?=",
                 id="across-a-fold"),
    pytest.param("f\udce4l\0lig", "=?UTF-8?Q?f=C3=A4llig?=", id="a-nul-goes"),
    pytest.param("plain words", "plain words", id="nothing-raw"),
    pytest.param("für Grüße", "für Grüße", id="utf-8-as-a-whole"),
])
def test_raw_words_go_in_encoded_words(value: str, sent: str) -> None:
    assert encode_raw_words(value, None) == sent
