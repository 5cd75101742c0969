"""Body and subject rules read words that mix Latin with Cyrillic or Greek letters.

"P\u0430ypal" with a Cyrillic a, "micr\u03bfsoft" with a Greek omicron: a rule written in
Latin letters finds them, in plain text, in HTML (hidden text too) and in the
Subject; text written wholly in Cyrillic or Greek is never read otherwise. The
Subject is also read without invisible characters and in its compatibility form.
"""

from __future__ import annotations

import base64
import dataclasses

import pytest

from postwarden_policies import Envelope, bodytext, evaluate_message, parse_message
from postwarden_policies.lookalikes import MANY_MIXED, MIXED_SPAN, as_latin

from .policy_helpers import body_rule_matches, html_part, rule_policy, text_message

SPOOFED = [
    pytest.param("Your P\u0430ypal account", "paypal", id="cyrillic-a"),
    pytest.param("\u0410pple ID locked", "apple", id="cyrillic-capital-a"),
    pytest.param("micr\u03bfsoft support", "microsoft", id="greek-omicron"),
    pytest.param("\u0455ecurity alert", "security", id="cyrillic-dze"),
    pytest.param("www.\u0440\u0430\u0443\u0440\u0430l.com", "paypal", id="all-but-one-letter"),
    pytest.param("\u0441\u03bf\u03c1y", "copy", id="cyrillic-and-greek"),
]
COP = "\u0441\u043e\u0440"  # Russian for litter: Cyrillic letters, each like a Latin one
RUSSIAN = f"\u0421\u043e\u0440 \u0438 {COP}\u0430, \u043a\u043e\u043f\u0438\u044f"
GREEK = "Καλημέρα, ο κόσμος"  # Greek: good morning, world


def _plain(text: str) -> tuple[str, ...]:
    return bodytext.rendering(dataclasses.replace(html_part(0), content_type="text/plain"),
                              {}, text)


@pytest.mark.parametrize(("text", "word"), SPOOFED)
@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
def test_a_word_with_lookalike_letters_matches_a_latin_rule(
    text: str, word: str, content_type: str
) -> None:
    assert body_rule_matches(f"(?i){word}", text_message(content_type, f"<p>{text}</p>"))


def test_a_mixed_word_split_by_hidden_text_reads_whole() -> None:
    html = '<p>Your P\u0430y<span style="display:none">zz</span>pal account</p>'
    assert body_rule_matches("(?i)paypal account", text_message("text/html", html))


def test_a_mixed_word_in_a_compatibility_form_reads_as_latin() -> None:
    """Mathematical bold Greek alpha: NFKC makes it Greek, the lookalikes Latin."""
    assert body_rule_matches("(?i)paypal", text_message("text/plain", "P\U0001d6c2ypal"))


@pytest.mark.parametrize("text", [
    RUSSIAN, GREEK, f"{RUSSIAN} Paypal {GREEK}",
    # Ukrainian writes an apostrophe that is a modifier letter (U+02BC), in no script.
    "\u0441\u0456\u043c\u02bc\u044f \u0441\u043e\u0440",
])
def test_words_wholly_in_cyrillic_or_greek_are_read_as_written(text: str) -> None:
    assert as_latin(text) == text
    assert _plain(text) == ()
    assert not body_rule_matches("(?i)cop", text_message("text/plain", text))


def test_only_the_mixed_word_is_read_as_latin() -> None:
    """Words end at non-letters: the Russian words around a mixed one stay."""
    text = f"{COP} {COP}-P\u0430ypal {COP}x, 1{COP}"
    assert as_latin(text) == f"{COP} {COP}-Paypal copx, 1{COP}"


@pytest.mark.parametrize("text", ["\u0531b", f"2\u00d7{COP}", f"caf\u00e9 {COP}"])
def test_letters_of_other_scripts_and_symbols_do_not_make_a_word_mixed(text: str) -> None:
    """Armenian shares a UTF-8 lead byte with Cyrillic, the multiplication sign with
    Latin letters: the first look takes them for letters, the word's own check does not."""
    assert as_latin(text) == text


def test_a_text_that_mixes_scripts_everywhere_is_read_as_latin_throughout() -> None:
    """Word by word would take seconds on 4,000,000 characters: past a thousand
    places, one in MIXED_SPAN characters, each lookalike is read as Latin."""
    text = f"\u0430b {COP} " * (MANY_MIXED + 1)
    assert as_latin(text) == "ab cop " * (MANY_MIXED + 1)
    russian = f"{COP} " * (MIXED_SPAN // 4)
    sparse = f"\u0430b {russian}" * (MANY_MIXED + 1)  # once in more than MIXED_SPAN
    assert as_latin(sparse) == f"ab {russian}" * (MANY_MIXED + 1)


def _subject_message(subject: str) -> bytes:
    encoded = base64.b64encode(subject.encode()).decode()
    return (
        "From: a@elsewhere.test\r\nTo: b@example.com\r\n"
        f"Subject: =?utf-8?b?{encoded}?=\r\n\r\nhello\r\n"
    ).encode()


def _subject_matches(pattern: str, subject: str) -> bool:
    policy = rule_policy(f"subject: '{pattern}'", "reject")
    return evaluate_message(policy, _subject_message(subject), Envelope()).rules == ("r",)


@pytest.mark.parametrize(
    ("subject", "pattern"),
    [
        pytest.param("\uff26\uff32\uff25\uff25 money", "(?i)free money", id="fullwidth"),
        pytest.param("fr\u200bee money", "(?i)free money", id="zero-width-space"),
        pytest.param("Your P\u0430ypal account", "(?i)paypal", id="lookalike"),
        pytest.param("\uff30\u0430ypal", "(?i)paypal", id="fullwidth-and-lookalike"),
    ],
)
def test_a_subject_rule_reads_the_subject_as_readers_do(subject: str, pattern: str) -> None:
    assert _subject_matches(pattern, subject)


def test_a_russian_subject_is_read_as_written() -> None:
    assert not _subject_matches("(?i)cop", RUSSIAN)
    assert _subject_matches(COP, RUSSIAN)


def test_a_subject_that_matches_as_written_is_read_no_other_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unread(line: str) -> tuple[str, ...]:
        raise AssertionError("read otherwise")

    monkeypatch.setattr(bodytext, "line_readings", unread)
    assert _subject_matches("(?i)caf", "Caf\u00e9 P\u0430ypal")
    facts = parse_message(_subject_message("Caf\u00e9"), Envelope())
    assert facts.subject == "Caf\u00e9"


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        pytest.param("P\u0430ypal Service", True, id="lookalike-display-name"),
        pytest.param("\uff30\uff41\uff59\uff50\uff41\uff4c", True, id="fullwidth-display-name"),
        pytest.param("\u0420\u0430\u0439", False, id="russian-name"),
    ],
)
def test_a_header_rule_reads_a_value_as_readers_do(name: str, matches: bool) -> None:
    encoded = base64.b64encode(name.encode()).decode()
    raw = (f"From: =?utf-8?b?{encoded}?= <x@evil.example>\r\nTo: b@example.com\r\n"
           "Subject: hi\r\n\r\nhello\r\n").encode()
    policy = rule_policy("header: {From: '(?i)paypal'}", "reject")
    assert (evaluate_message(policy, raw, Envelope()).rules == ("r",)) is matches


def test_header_values_are_read_otherwise_within_a_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value's first LINE_READ_MOST characters, LINES_READ_MOST characters in all,
    whatever the rules asking: hundreds of long crafted values in one message cost
    seconds when every rule read every value whole again."""
    read: list[int] = []
    real = bodytext.line_readings
    monkeypatch.setattr(bodytext, "line_readings", lambda line: read.append(len(line))
                        or real(line))
    # 17,011 characters each, 1.7 MB in all: within the header section's 2 MiB.
    long_value = "P\u0430ypal\u200b " + "x" * 17_000
    headers = "".join(f"X-Note: {long_value}{n}\r\n" for n in range(100))
    raw = f"From: a@elsewhere.test\r\n{headers}Subject: hi\r\n\r\nhello\r\n".encode()
    policy = rule_policy("any:\n  - header: {X-Note: '(?i)wire transfer'}\n"
                         "  - header: {X-Note: '(?i)invoice'}", "reject")
    assert evaluate_message(policy, raw, Envelope()).rules == ()
    assert max(read) == bodytext.LINE_READ_MOST
    assert sum(read) <= bodytext.LINES_READ_MOST


@pytest.mark.parametrize("padding", ["a", "\u00e9"], ids=["ascii", "latin-1"])
def test_padded_headers_leave_the_subject_read_as_readers_read_it(padding: str) -> None:
    """Header values share a budget for being read otherwise; the Subject does not, and
    ASCII (which reads no otherwise) spends none of it."""
    subject = base64.b64encode("Your P\u0430ypal account".encode()).decode()
    pad = "".join(f"X-Pad: {padding * 9_997}{n}\r\n" for n in range(100, 200))
    raw = (f"From: x@evil.example\r\nTo: a@example.com\r\n{pad}"
           f"Subject: =?utf-8?b?{subject}?=\r\n\r\nhi\r\n").encode()
    policy = rule_policy("any:\n  - header: {X-Pad: never-there}\n"
                         "  - subject: '(?i)paypal'", "reject")
    assert evaluate_message(policy, raw, Envelope()).rules == ("r",)
