"""RE2 folds case one character for one: a case-insensitive pattern (a glob always is)
holding a letter whose case folds to two (ß to ss, the ligature ﬁ to fi) misses the
other spelling. It loads, being right for the text as written, with a warning telling
how to write both; nothing rewrites it."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies.cli import main
from postwarden_policies.errors import CASE_FOLDING
from postwarden_policies.loader import load_policy_set_from_sources
from postwarden_policies.patterns import compile_regex
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"


def _warnings(condition: str) -> list[PolicyIssue]:
    found: list[PolicyIssue] = []
    load_policy_set_from_sources([("p.yaml", HEAD + f"      {condition}\n")], warn=found.append)
    return found


def test_re2_matches_no_other_spelling() -> None:
    """Why the warning: what an author of (?i)straße expects of it."""
    assert not compile_regex("(?i)straße").test("STRASSE")
    assert not compile_regex("(?i)straße").test("strasse")
    assert compile_regex("(?i)stra(?:ß|ss)e").test("STRASSE")


@pytest.mark.parametrize(("condition", "column", "told"), [
    ("subject: '(?i)straße'", 16,
     "when.subject: RE2 regular expression '(?i)straße' is case-insensitive, but RE2 folds case "
     "one "
     "character for one: 'ß' matches neither 'ss' nor 'SS'; write both spellings, as in "
     "(?:ß|ss)"),
    ("body: 'x(?i:\ufb01nance)'", 13,
     "when.body: RE2 regular expression 'x(?i:\ufb01nance)' is case-insensitive, but RE2 folds "
     "case one "
     "character for one: '\ufb01' matches neither 'fi' nor 'FI'; write both spellings, as in "
     "(?:\ufb01|fi)"),
    ("attachment: {filename: ['*.pdf', '*straße*']}", 40,
     "glob '*straße*' is case-insensitive, but RE2 folds case one character for one: 'ß' "
     "matches neither 'ss' nor 'SS'; list a glob with ss in its place too"),
])
def test_a_caseless_letter_that_folds_to_two_is_a_warning(condition: str, column: int,
                                                          told: str) -> None:
    """(?i)straße loaded silently, and missed STRASSE in every Subject."""
    [warning] = _warnings(condition)
    assert (warning.line, warning.column, warning.code) == (7, column, CASE_FOLDING)
    assert warning.message == f"rule 'r': {told}"


@pytest.mark.parametrize("condition", [
    "subject: 'straße'",  # case-sensitive: it matches what it says
    "subject: '(?-i)straße'",
    "subject: '(?i)stra(?:ß|ss)e'",  # RE2's (?i) makes ss match SS
    "subject: '(?i)strasse'",
    r"subject: '\(?i\)straße'",  # a literal "(?i)"
])
def test_case_sensitive_or_written_out_warns_of_nothing(condition: str) -> None:
    assert _warnings(condition) == []


def test_check_prints_it_as_a_warning(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(HEAD + "      subject: '(?i)straße'\n", encoding="utf-8")
    assert main(["check", str(tmp_path)]) == 0
    told = f"{policy}:7:16: warning: rule 'r': when.subject: RE2 regular expression"
    assert told in capsys.readouterr().err


def test_a_glob_listed_with_the_other_spelling_warns_of_nothing() -> None:
    assert _warnings("attachment: {filename: ['*straße*', '*STRASSE*']}") == []
