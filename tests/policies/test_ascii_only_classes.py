"""RE2's \\w, \\b and [[:alpha:]] know ASCII only: a pattern meant for words outside
ASCII that uses them loads (it is right for ASCII text) with a warning telling \\pL."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies.cli import main
from postwarden_policies.errors import ASCII_ONLY_CLASS
from postwarden_policies.loader import load_policy_set_from_sources
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"


def _warnings(condition: str) -> list[PolicyIssue]:
    found: list[PolicyIssue] = []
    load_policy_set_from_sources([("p.yaml", HEAD + f"      {condition}\n")], warn=found.append)
    return found


@pytest.mark.parametrize(("condition", "told"), [
    (r"subject: '[а-я]+\b'", r"has [а-я]+\b, a boundary beside letters outside ASCII"),
    (r"body: '\Bé'", r"has \Bé, a boundary beside letters outside ASCII"),
    (r"body: '\w+ рублей'", r"uses \w with letters outside ASCII"),
    (r"body: '[[:alpha:]]+ рублей'", "uses [:alpha:] with letters outside ASCII"),
    (r"body: '\pL+\b'", r"has \pL+\b, a boundary beside letters outside ASCII"),
    (r"body: '\B(?:\p{Cyrillic}{3})'", r"has \B(?:\p{Cyrillic}, a boundary"),
    (r"header: {X-A: '[\x{430}-\x{44f}]+\b'}", r"has [\x{430}-\x{44f}]+\b, a boundary"),
])
def test_an_ascii_only_class_meant_for_other_words_is_a_warning(condition: str,
                                                                told: str) -> None:
    """A Cyrillic class then \\b holds at no end of a Russian word, and loaded silently."""
    [warning] = _warnings(condition)
    assert warning.code == ASCII_ONLY_CLASS
    assert told in warning.message
    assert r"[\pL\pN_] for \w" in warning.message


@pytest.mark.parametrize("condition", [
    r"subject: '(?i)\bfree\b'", r"body: '[a-z]+\b'", r"body: '\w+@\w+'",
    r"body: 'цена: \d+'", r"body: '\\b[а-я]+'", r"body: '[–—]\bfoo'",
    r"body: '(?:^|[^\pL\pN_])слово(?:[^\pL\pN_]|$)'",
    # A boundary beside ASCII holds where it should, whatever else the pattern holds.
    r"body: '\bfree\b|слово'", r"body: '\b(?:café)'",
])
def test_ascii_words_and_the_unicode_form_warn_of_nothing(condition: str) -> None:
    assert _warnings(condition) == []


def test_check_prints_it_as_a_warning(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(HEAD + "      subject: '[а-я]+\\b'\n", encoding="utf-8")
    assert main(["check", str(tmp_path)]) == 0
    told = f"{policy}:7:16: warning: rule 'r': when.subject: RE2 regular expression"
    assert told in capsys.readouterr().err
