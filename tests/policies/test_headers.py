"""Header sections, RFC 2047 words and RFC 2231 parameters."""

from __future__ import annotations

import pytest

from postwarden_policies.headers import (
    decode_words,
    first_of_each,
    parameter_list,
    parse_header_section,
)
from tests.memory import peak_of


def parse_parameters(value: str, flags: set[str]) -> tuple[str, dict[str, str]]:
    """One value per name, the first occurrence's, as the readers of a field take them."""
    main, parameters, _ = parameter_list(value, flags)
    return main, first_of_each(parameters)


def test_section_unfolds_and_finds_the_body() -> None:
    raw = b"Subject: one\r\n two\r\n\tthree\r\nX-A:b\r\n\r\nbody"
    flags: set[str] = set()
    section = parse_header_section(raw, 0, len(raw), flags)
    assert [(h.name, h.raw_value) for h in section.headers] == [
        ("Subject", "one two\tthree"),
        ("X-A", "b"),
    ]
    assert raw[section.body_start :] == b"body"
    assert not section.eight_bit and not section.separator_missing and not flags


def test_section_ends_at_a_non_header_line() -> None:
    raw = b"A: 1\nnot a header\nrest\n"
    section = parse_header_section(raw, 0, len(raw), set())
    assert section.separator_missing
    assert raw[section.body_start :] == b"not a header\nrest\n"


def test_eight_bit_values_keep_their_bytes() -> None:
    raw = b"Subject: caf\xc3\xa9 \xe9\n\n"
    header = parse_header_section(raw, 0, len(raw), set()).headers[0]
    assert header.raw_value == "café \udce9"
    assert header.value == "café é"  # test_undeclared_charset.py
    assert header.raw_value.encode("utf-8", "surrogateescape") == b"caf\xc3\xa9 \xe9"


@pytest.mark.parametrize(
    ("value", "expected", "flags"),
    [
        pytest.param("=?utf-8?q?caf=C3=A9?=", "café", set(), id="q"),
        pytest.param("=?UTF-8?B?w6k=?= =?utf-8?b?w6k=?=", "éé", set(), id="adjacent-words-join"),
        pytest.param("a =?iso-8859-1?q?=E9?= b", "a é b", set(), id="text-around"),
        pytest.param("=?utf-8*en?q?hi?=", "hi", set(), id="rfc2231-language"),
        pytest.param("=?x-nope?q?abc?=", "abc", {"unknown_charset"}, id="unknown-charset"),
        pytest.param("=?rot13?q?abc?=", "abc", {"unknown_charset"}, id="non-text-codec"),
        pytest.param("=?utf-8?q?=FF?=", "\ufffd", set(), id="bad-bytes"),
        pytest.param("no words = here ?=", "no words = here ?=", set(), id="plain"),
        pytest.param("a ?=  =? b", "a ?=  =? b", set(), id="plain-marks-keep-spaces"),
        pytest.param("=?utf-8?q?a?= \t =?iso-8859-1?q?=E9?=", "a\xe9", set(),
                     id="adjacent-words-in-two-charsets"),
        pytest.param("=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b", set(), id="text-between-words"),
        pytest.param("x ?=  =?utf-8?q?a?=", "x ?=  a", set(), id="plain-end-mark-then-word"),
        pytest.param("=?utf-8?q?a?=  =? b", "a  =? b", set(), id="word-then-plain-start-mark"),
        pytest.param(" =?utf-8?q?a?= ", " a ", set(), id="spaces-around-one-word"),
    ],
)
def test_encoded_words(value: str, expected: str, flags: set[str]) -> None:
    seen: set[str] = set()
    assert decode_words(value, seen) == expected
    assert seen == flags


@pytest.mark.parametrize(
    ("value", "main", "params"),
    [
        pytest.param('Text/HTML; Charset="UTF-8"', "text/html", {"charset": "UTF-8"}, id="basic"),
        pytest.param('a/b; name="x \\"y\\".txt"', "a/b", {"name": 'x "y".txt'}, id="quoted-pair"),
        pytest.param("a/b; name=x; name=y", "a/b", {"name": "x"}, id="first-wins"),
        pytest.param(
            "attachment; filename*=UTF-8''%E2%82%AC%20rate.pdf",
            "attachment",
            {"filename": "€ rate.pdf"},
            id="rfc2231",
        ),
        pytest.param(
            "attachment; filename*1*=%AC.txt; filename*0*=utf-8''%E2%82",
            "attachment",
            {"filename": "€.txt"},
            id="continuation-split-character-out-of-order",
        ),
        pytest.param(
            'attachment; filename*0="a b"; filename*1="c"',
            "attachment",
            {"filename": "a bc"},
            id="continuation-plain",
        ),
        pytest.param(
            'attachment; filename="=?utf-8?B?w6kuZXhl?="',
            "attachment",
            {"filename": "é.exe"},
            id="rfc2047-in-quotes",
        ),
        pytest.param('a/b; name="unterminated', "a/b", {"name": "unterminated"}, id="unterminated"),
        pytest.param("", "", {}, id="empty"),
    ],
)
def test_parameters(value: str, main: str, params: dict[str, str]) -> None:
    assert parse_parameters(value, set()) == (main, params)


@pytest.mark.parametrize(
    ("value", "preferred"),
    [
        ("a/b; charset=x; charset*=''y", "y"),
        ("a/b; charset*=''y; charset=x", "y"),
        ("a/b; charset=x; charset*1=z; charset*0=y", "yz"),
        ("a/b; charset*1=z; charset*=''w; charset*0=y", "w"),
        ("a/b; charset=x; charset=y", "x"),
    ],
    ids=["extended-after", "extended-before", "continuation", "single-over-continuation",
         "first-plain"],
)
def test_the_rfc2231_form_is_what_thunderbird_picks(value: str, preferred: str) -> None:
    assert parameter_list(value, set())[2] == {"charset": preferred}


def test_parameters_after_a_comma_are_listed_as_mozilla_reads_them() -> None:
    main, found, preferred = parameter_list('attachment, filename="a.js"; x=1', set())
    assert main == 'attachment, filename="a.js"'
    assert found == [("x", "1"), ("filename", "a.js"), ("x", "1")]
    assert preferred == {"filename": "a.js", "x": "1"}


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("a; filename=x.js (c)", ["x.js (c)", "x.js"]),
        ("a; name=(c) x.js", ["(c) x.js", "x.js"]),
        ("a; filename=x.js(c).pdf", ["x.js(c).pdf", "x.js"]),
        ('a; filename="x.js (c)"', ["x.js (c)"]),
        ("a; filename=x.js", ["x.js"]),
        ("a; charset=us-ascii (Plain text)", ["us-ascii (Plain text)"]),
    ],
    ids=["comment-after", "comment-before", "comment-inside", "quoted", "plain", "not-a-name"],
)
def test_an_unquoted_name_is_also_read_to_its_first_space(value: str, names: list[str]) -> None:
    assert [v for _, v in parameter_list(value, set())[1]] == names


def test_unknown_2231_charset_is_flagged() -> None:
    flags: set[str] = set()
    assert parse_parameters("a; filename*=x-zz''abc", flags) == ("a", {"filename": "abc"})
    assert flags == {"unknown_charset"}


def test_encoded_words_are_decoded_as_readers_decode_them() -> None:
    flags: set[str] = set()
    # Spaces inside a Q word: against RFC 2047, decoded by Python and Thunderbird alike.
    assert decode_words("=?utf-8?q?reset your p=61ssword?=", flags) == "reset your password"
    # A character split between two adjacent words in one charset.
    split = "=?utf-8?b?0L/QsNE=?= =?utf-8?b?gNC+0LvRjA==?="
    assert decode_words(split, flags) == "пароль"
    # Words in different charsets, or apart, are decoded one by one.
    mixed = "Re: =?iso-8859-1?q?caf=E9?= =?utf-8?q?_na=C3=AFve?= and =?utf-8?q?more?="
    assert decode_words(mixed, flags) == "Re: café naïve and more"
    assert not flags


def test_a_long_quoted_name_with_a_quoted_pair_is_read_whole() -> None:
    # The name on a uuencode begin line (body text, no header size limit) is read in a
    # made-up filename="...", matched in one pass (20 MB took 0.6 s of CPU, now 0.15 s).
    name = "a" * 200_000 + '\\".exe'
    found = parameter_list(f'inline; filename="{name}"', set())[1]
    assert found == [("filename", name.replace("\\", ""))]


def test_a_name_after_many_comments_is_read_in_memory_of_its_size() -> None:
    # A part's header (body to Postfix, up to MAX_FIELD_OCTETS): sre kept a backtracking
    # point a comment for the reading of Python's email package, 130 MB for 1.8 MB.
    value = "attachment; filename=" + "(a)" * 100_000 + "x.exe"
    found, peak = peak_of(lambda: parameter_list(value, set())[1])
    assert found == [("filename", "(a)" * 100_000 + "x.exe"), ("filename", "x.exe")]
    assert peak < 10 * len(value)
