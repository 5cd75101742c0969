"""What an issue quotes of a key or value: bounded, and placed where a line is not enough."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import (
    SettingsError,
    check_policy_text,
    gather_settings,
    load_policy_set_from_sources,
)

HUGE = "k" * (4 * 1024 * 1024 - 200)  # a source's whole budget: one key or value
CUT = f"{'k' * 80!r}... ({len(HUGE)} characters)"


def _issues(text: str) -> list[str]:
    return [str(issue) for issue in check_policy_text("p.yaml", text)]


@pytest.mark.parametrize(("text", "issue"), [
    (f"version: 1\nname: p\n? {HUGE}\n: 1\n", f"p.yaml:3:3: unknown key {CUT} in policy;"),
    (f"version: 1\nname: p\nmode: {HUGE}\n",
     f"p.yaml:3:7: mode: expected one of enforce, report; got {CUT}"),
    (f"version: 1\nname: p\nlimits: {{max_recipients: !!int {HUGE}}}\n",
     f"p.yaml:3:26: limits.max_recipients: expected an integer, got {CUT} tagged !!int, "
     "which is not an integer"),
    (f"version: 1\nname: p\nrules:\n  - name: {HUGE}\n    then: nonsense\n",
     f"p.yaml:5:11: rule {CUT}: then: expected one of accept,"),
])
def test_a_huge_key_or_value_is_quoted_cut_short(text: str, issue: str) -> None:
    """Each issue quoted it whole: a 4 MB key made a 4 MB line (a rule's name, every
    issue of the rule)."""
    issues = _issues(text)
    assert any(found.startswith(issue) for found in issues), issues
    assert max(map(len, issues)) < 400


@pytest.mark.parametrize(("text", "issue"), [
    ("version: 1\nname: p\nlimits: {max_recipients: 1, max_recipients: 2}\n",
     "p.yaml:3:29: duplicate key 'max_recipients' (first defined at line 3, column 10)"),
    ("version: 1\nname: p\nrules: [{name: a, then: reject}, {name: a, then: reject}]\n",
     "p.yaml:3:41: duplicate rule name 'a' (first at line 3, column 16)"),
])
def test_a_duplicate_on_the_same_line_is_placed_by_column(text: str, issue: str) -> None:
    """Said at line 3, "first defined at line 3" did not say which key was first."""
    assert _issues(text) == [issue]


@pytest.mark.parametrize(("number", "told"), [
    ("1e400", "integer too large: at most 9223372036854775807, got 1e400"),
    ("1.5e309", "integer too large: at most 9223372036854775807, got 1.5e309"),
    ("99999999999999999999", "integer too large: at most 9223372036854775807, got "
                             "99999999999999999999"),
    ("-1e400", "expected an integer of at least 1, got -1e400"),
    ("-99999999999999999999", "expected an integer of at least 1, got -99999999999999999999"),
    ("1e-400", "expected an integer, got 1e-400"),
    ("1.0000000000000000001", "expected an integer, got 1.0000000000000000001"),
    (".inf", "expected an integer, got .inf"),
])
def test_a_number_out_of_range_is_told_as_written(number: str, told: str) -> None:
    """-1e400 was "integer too large", and 1e-400 (read as 0.0) "0 would refuse every
    recipient": neither said what was wrong with what the author wrote."""
    text = f"version: 1\nname: p\nlimits:\n  max_recipients: {number}\n"
    assert _issues(text) == [f"p.yaml:4:19: limits.max_recipients: {told}"]


@pytest.mark.parametrize(("number", "told"), [
    ("-1e400", "expected an integer of at least 0, got -1e400"),
    ("1e-400", "expected an integer, got 1e-400"),
])
def test_a_priority_is_told_so_too(number: str, told: str) -> None:
    """1e-400 loaded as priority 0, silently."""
    assert _issues(f"version: 1\nname: p\npriority: {number}\n") == [
        f"p.yaml:3:11: priority: {told}"]


def test_a_whole_number_past_a_floats_precision_is_read_exactly() -> None:
    """9007199254740993.0 read as the float 9007199254740992.0: another priority."""
    text = "version: 1\nname: p\npriority: 9007199254740993.0\n"
    [policy] = load_policy_set_from_sources([("p.yaml", text)]).policies
    assert policy.priority == 9007199254740993


def test_a_settings_file_says_the_same(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("{a: 1, a: 2}\n")
    with pytest.raises(SettingsError) as refused:
        gather_settings(config, {}, ["a"])
    assert refused.value.problems == [f"{config}:1: 'a' set twice (first at line 1, column 2)"]
    config.write_text(f"? {HUGE}\n: 1\n")
    with pytest.raises(SettingsError) as refused:
        gather_settings(config, {}, ["a"])
    assert refused.value.problems == [f"{config}:1: unknown setting {CUT}"]
    config.write_text("a: 1e400\n")
    with pytest.raises(SettingsError) as refused:
        gather_settings(config, {}, ["a"])
    assert refused.value.problems == [
        f"{config}:1:4: a: number too large: at most 1.79769e+308"]
    config.write_text("b: 1\na: [1, 99999999999999999999999]\n")
    with pytest.raises(SettingsError) as refused:
        gather_settings(config, {}, ["a", "b"])
    assert refused.value.problems == [
        f"{config}:2:8: a: integer too large: at most 9223372036854775807"]


@pytest.mark.parametrize("line", ["rules: []", "# the second file", "", "---", "- a",
                                  "  b: 1"], ids=["key", "comment", "blank", "document",
                                                  "item", "indented"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_a_byte_order_mark_in_the_middle_is_told_as_one(line: str, newline: str) -> None:
    """Two files joined (cat a.yaml b.yaml) left the second's byte order mark first on a
    line: before a key it was "unknown key '\\ufeffrules'", before a comment or a blank
    line YAML skipped it and the file loaded, before --- or a list item it was a syntax
    error ("could not find expected ':'") that did not say why."""
    text = newline.join(["version: 1", "name: p", f"\ufeff{line}", ""])
    assert _issues(text) == [
        "p.yaml:3:1: a byte order mark (U+FEFF) in the middle of the file: remove it (were "
        "two files joined?)"]


def test_a_byte_order_mark_first_in_the_file_is_none_of_that() -> None:
    assert _issues("\ufeffversion: 1\nname: p\n# \ufeff in a comment\n") == []


@pytest.mark.parametrize(("field", "number", "issue"), [
    ("code", "99999999999999999999",
     'p.yaml:6:11: rule \'a\': code: expected an SMTP code such as 550 or "550 5.7.1", got '
     "99999999999999999999"),
    ("when", "{size_over: -1e400}",
     'p.yaml:6:23: rule \'a\': when.size_over: expected a size in bytes such as 1048576 or "1MB", '
     'got -1e400'),
    ("when", "{size_over: 1e-400}",  # read as 0.0: any message's size is over it
     'p.yaml:6:23: rule \'a\': when.size_over: expected a size in bytes such as 1048576 or "1MB", '
     'got 1e-400'),
    ("code", "550.00000000000000001",  # read as 550.0
     'p.yaml:6:11: rule \'a\': code: expected an SMTP code such as 550 or "550 5.7.1", got '
     "550.00000000000000001"),
])
def test_a_number_past_the_range_is_told_as_written(field: str, number: str, issue: str) -> None:
    """A reply code past an integer's range was "got an integer", and a size of -1e400
    "size too large": neither said what was wrong."""
    text = f"version: 1\nname: p\nrules:\n  - name: a\n    then: reject\n    {field}: {number}\n"
    assert _issues(text) == [issue]


@pytest.mark.parametrize(("number", "told"), [
    ("9" * 2_000_000, "integer too large: at most 9223372036854775807, got "
                      f"{'9' * 80}... (2000000 characters)"),
    ("1." + "0" * 2_000_000 + "1", f"expected an integer, got 1.{'0' * 78}... "
                                   "(2000003 characters)"),
])
def test_a_number_of_millions_of_digits_is_told_too(number: str, told: str) -> None:
    """Judging it as written with decimal arithmetic overflowed the context's exponent
    (decimal.Overflow) past a million digits: the load raised instead of telling."""
    assert _issues(f"version: 1\nname: p\npriority: {number}\n") == [
        f"p.yaml:3:11: priority: {told}"]
