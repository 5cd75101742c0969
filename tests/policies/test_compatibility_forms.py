"""Body rules read letters in Unicode's compatibility forms as the plain letters.

Fullwidth, mathematical, circled and ligature forms of letters read as a
rule written in plain letters, in plain text and in HTML (NFKC); the NFKC reading
stays within the length of the text it reads, however much it would expand.
"""

from __future__ import annotations

import dataclasses
import sys
import unicodedata

import pytest

from postwarden_policies import Envelope, bodytext, evaluate, evaluate_message, parse_message

from .policy_helpers import body_rule, body_rule_matches, html_part, rule_policy, text_message


def _rejected(raw: bytes) -> bool:
    return body_rule_matches("(?i)free money", raw)


FORMS = [
    pytest.param("ｆｒｅｅ ｍｏｎｅｙ", id="fullwidth"),
    pytest.param("ＦＲＥＥ ＭＯＮＥＹ", id="fullwidth-capitals"),
    pytest.param("\U0001d41f\U0001d42b\U0001d41e\U0001d41e money", id="mathematical-bold"),
    pytest.param("\U0001d4bb\U0001d4c7\U0001d452\U0001d452 money", id="mathematical-script"),
    pytest.param("\U0001d5cb\U0001d5cb\U0001d5be\U0001d5be money".replace(
        "\U0001d5cb\U0001d5cb", "\U0001d5bf\U0001d5cb"), id="mathematical-sans"),
    pytest.param("ⓕⓡⓔⓔ money", id="circled"),
    pytest.param("free m\uff4fney", id="one-letter"),
]


@pytest.mark.parametrize("text", FORMS)
@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
def test_letters_in_a_compatibility_form_match_a_plain_rule(text: str, content_type: str) -> None:
    assert _rejected(text_message(content_type, text))


def test_a_compatibility_form_written_as_references_matches() -> None:
    assert _rejected(text_message("text/html", "<p>&#xff46;&#xff52;&#xff45;&#xff45; money</p>"))


def test_a_ligature_in_html_reads_as_its_letters() -> None:
    """Its reading is longer: the tags HTML's rendering leaves out make room for it."""
    policy = rule_policy("body: 'finance offer'", "reject")
    raw = text_message("text/html", "<p>best \ufb01nance offer</p>")
    assert evaluate_message(policy, raw, Envelope()).rules == ("r",)


def test_expanding_characters_do_not_push_the_word_out_of_reach() -> None:
    """An ellipsis reads as three dots: thousands of them would make the reading
    longer than the text; they are then left as written, and the word still reads."""
    assert _rejected(text_message("text/plain", "\u2026" * 5000 + " ｆｒｅｅ ｍｏｎｅｙ"))
    assert _rejected(text_message("text/plain", "\ufdfa" * 5000 + " ｆｒｅｅ ｍｏｎｅｙ"))


@pytest.mark.parametrize(
    "text",
    ["\ufdfa" * 5000 + "ｆｒｅｅ", "\u2026ｆｒｅｅ" * 5000, "\u4e00\ufdfa" * 5000 + "ｆｒｅｅ"],
)
@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
def test_the_reading_is_never_twice_as_long_as_the_text(text: str, content_type: str) -> None:
    part = dataclasses.replace(html_part(0), content_type=content_type)
    views = bodytext.rendering(part, {}, text)
    assert any("free" in view for view in views)
    assert all(len(view) <= 2 * len(text) for view in views)


def test_an_ellipsis_reads_as_three_dots() -> None:
    """The common case: a few expanding characters, read in full NFKC."""
    views = bodytext.rendering(dataclasses.replace(html_part(0), content_type="text/plain"),
                               {}, "Gr\u00fc\u00dfe\u2026 \uff46\uff52\uff45\uff45")
    assert "Gr\u00fc\u00dfe... free" in views


def test_text_already_in_its_compatibility_form_has_no_rendering_to_search() -> None:
    facts = parse_message(text_message("text/plain", "caf\u00e9 na\u00efve words"), Envelope())
    assert evaluate(body_rule("(?i)free money"), facts).rules == ()
    assert list(facts.renderings) == []


def test_normalizing_stops_at_the_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """U+FDFA is 18 characters in NFKC: normalized whole, 2,000,000 characters of text made
    19,000,000 (seconds, hundreds of MiB); a slice at a time, the work stops at the room."""
    made: list[int] = []
    normalize = unicodedata.normalize

    def counted(form: str, text: str) -> str:
        made.append(len(normalized := normalize(form, text)))  # type: ignore[arg-type]
        return normalized

    monkeypatch.setattr(unicodedata, "normalize", counted)
    text = "\ufdfa " * 1_000_000
    folded = bodytext.compatibility_form(text, 2 * len(text))
    assert len(folded) == len(text)  # one character for one, past the room
    # The first slice expands past its share of the room: the work stops there.
    assert sum(made) <= 18 * 2 * bodytext.NFKC_SLICE


def _second_parts() -> set[str]:
    """Every character some canonical composition takes as its second part."""
    parts = set()
    for code in range(sys.maxunicode + 1):
        mapping = unicodedata.decomposition(chr(code)).split()
        if len(mapping) == 2 and not mapping[0].startswith("<"):
            parts.add(chr(int(mapping[1], 16)))
    return parts


def test_a_slice_ends_only_where_the_text_normalizes_the_same_in_two_pieces() -> None:
    """Before each character of the cut set, nothing from the left composes or reorders
    with it, so each slice normalizes as it would within the whole text."""
    second = _second_parts()
    for char in map(chr, range(sys.maxunicode + 1)):
        if bodytext.NFKC_CUT.match(char):
            assert unicodedata.category(char) != "Cn", hex(ord(char))
            assert unicodedata.combining(char) == 0, hex(ord(char))
            assert unicodedata.normalize("NFKC", char) == char, hex(ord(char))
            assert char not in second, hex(ord(char))


def test_a_ligature_in_long_text_without_ascii_is_read_in_full() -> None:
    """300,000 characters of Chinese without a space or line break: the slices end before
    ideographs, so the ligature far into it still reads as two letters."""
    text = "中文" * 100_000 + "\ufb01nance" + "文" * 1000
    folded = bodytext.compatibility_form(text, 2 * len(text))
    assert "finance" in folded and len(folded) == len(text) + 1
