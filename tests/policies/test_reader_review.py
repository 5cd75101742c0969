"""The policy reader (review): checks bounded by what was composed, lines counted by LF,
YAML 1.2 core scalars, and deep flow nesting placed at a line."""

from __future__ import annotations

import pytest
import yaml

from postwarden_policies import check_policy_text
from postwarden_policies.yamlnodes import Reader, compose, construct, dump

H = "version: 1\nname: t\n"


def issues(text: str) -> list[str]:
    return [
        f"{i.line}:{i.column}: {i.message}" if i.line else f"-: {i.message}"
        for i in check_policy_text("t.yaml", text)
    ]


def scalars_read(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    """How many scalars loading ``text`` read, and its issues."""
    calls = 0
    scalar = Reader.scalar

    def counting(self: Reader, node: yaml.ScalarNode) -> object:
        nonlocal calls
        calls += 1
        return scalar(self, node)

    monkeypatch.setattr(Reader, "scalar", counting)
    found = issues(text)
    return calls, found


def _aliased_expect_rules(broken: str, case_key: str) -> str:
    """A case with an expect_rules list of 2000 items, named by 300 aliases; a key that is
    no string (in the case, or at the top level) leaves the read from visiting it."""
    return (H + broken + "rules: [{name: r, then: accept}]\ntests:\n"
            "  - &c {" + case_key + "expect_rules: [" + "r, " * 2000 + "]}\n" + "  - *c\n" * 300)


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        pytest.param(_aliased_expect_rules("", "1: x, "),
                     "5:9: expected a string key, got an integer", id="broken-case"),
        pytest.param(_aliased_expect_rules("1: x\n", ""),
                     "3:1: expected a string key, got an integer", id="broken-top"),
    ],
)
def test_aliased_expect_rules_are_walked_once(
    text: str, issue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Walked once per alias, this list cost 600,000 scalars; once, fewer than the characters.
    calls, found = scalars_read(text, monkeypatch)
    assert found == [issue]
    assert calls < len(text)


def test_aliased_rules_behind_a_broken_top_level_are_walked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = "".join(f"k{i}: 0, " for i in range(2000))
    text = H + "1: x\nrules:\n  - &r {" + keys + "name: r}\n" + "  - *r\n" * 300
    calls, found = scalars_read(text, monkeypatch)
    assert found[0] == "3:1: expected a string key, got an integer"
    assert found[1:] == [f"{line}:5: duplicate rule name 'r' (first at line 5)"
                         for line in range(6, 306)]
    assert calls < len(text)


def test_an_aliased_case_with_an_unknown_rule_is_still_reported_at_each_alias() -> None:
    text = (H + "rules: [{name: r, then: accept}]\ntests:\n"
            "  - &c {name: c, raw: x, recipients: [a@b.test], expect: accept, expect_rules: [q]}\n"
            "  - *c\n")
    assert issues(text) == [
        "5:81: test 'c': unknown rule 'q' in expect_rules",
        "6:5: test 'c': unknown rule 'q' in expect_rules",
    ]


YAML11_BREAKS = pytest.mark.parametrize(
    "char", ["\u2028", "\u2029", "\u0085"], ids=["LS", "PS", "NEL"]
)


@YAML11_BREAKS
def test_a_yaml_1_1_line_break_in_a_quoted_value_keeps_later_lines(char: str) -> None:
    # Line 4 as editors, git and grep count lines: by LF.
    assert issues(H + f'description: "a{char}b"\npriority: x\n') == [
        "4:11: priority: expected an integer, got the string 'x'"
    ]


@YAML11_BREAKS
@pytest.mark.parametrize("style", ["a{}b", '"a{}b"', "|\n  a{}b"], ids=["plain", "quoted", "block"])
def test_a_yaml_1_1_line_break_is_text_as_yaml_1_2_reads_it(char: str, style: str) -> None:
    node, found = compose("t.yaml", H + "description: " + style.format(char) + "\nk: v\n")
    assert node is not None and not found
    (_, description), (_, later) = node.value[2:]
    assert description.value.rstrip("\n") == f"a{char}b"
    assert (later.start_mark.line, later.start_mark.column) == (style.count("\n") + 3, 3)


def test_a_private_use_character_in_the_source_is_kept_beside_a_yaml_1_1_line_break() -> None:
    node, found = compose("t.yaml", "a: \ue000\u2028\ue001\n")
    assert node is not None and not found
    assert node.value[0][1].value == "\ue000\u2028\ue001"


@YAML11_BREAKS
def test_dump_writes_a_yaml_1_1_line_break_as_an_escape(char: str) -> None:
    # Written raw, libyaml follows it with indentation, which YAML 1.2 reads as text.
    data = {"a": f"x{char}y", f"k{char}": f"{char}\nz", "b": char}
    text = dump(data)
    assert char not in text
    node, found = compose("d.yaml", text)
    assert node is not None and not found
    assert construct("d.yaml", node) == (data, [])
    assert yaml.safe_load(text) == data


def test_a_yaml_1_1_line_break_quoted_by_a_syntax_error_is_named() -> None:
    assert issues(H + "description: &a\u2028 x\n") == [
        "3:16: YAML syntax error: expected alphabetic or numeric character, but found '\\u2028'"
        " (a value that starts with * is read as a YAML alias, one with & as an anchor: quote "
        "it, as in '*.exe')"
    ]


@pytest.mark.parametrize(
    "value",
    ["2024-01-01", "2001-12-14t21:59:43.10-05:00", "="],
    ids=["date", "timestamp", "equals"],
)
def test_a_yaml_1_1_timestamp_or_value_is_text(value: str) -> None:
    # YAML 1.2's core schema has neither a timestamp nor a value (=) tag.
    assert issues(H + f"rules: [{{name: r, then: {{add_header: {{X-Since: {value}}}}}}}]\n") == []
    node, _ = compose("t.yaml", f"v: {value}\n")
    assert node is not None
    assert Reader("t.yaml").scalar(node.value[0][1]) == value


def test_deep_flow_nesting_is_reported_at_its_line() -> None:
    found = issues(H + "description: " + "[" * 5000 + "]" * 5000 + "\n")
    assert len(found) == 1
    assert found[0].startswith("3:") and found[0].endswith(": YAML nested too deeply")


def test_a_private_use_character_written_as_an_escape_is_no_stand_in() -> None:
    """NEL, LS and PS are read with private-use characters standing in for them: one
    the file writes as an escape is there only after scanning, and came back a NEL."""
    node, found = compose("t", 'a: "\\ue000"\nb: "\x85"\nc: "\\U0000E001"\n')
    assert found == []
    value, _ = construct("t", node)
    assert value == {"a": "\ue000", "b": "\x85", "c": "\ue001"}


def test_equal_scalars_are_checked_each_at_its_own_place() -> None:
    """expect_rules 1 (a number) and "1" (a string): CPython shares the one-character
    string, and the second check was taken for the first."""
    case = ('  - {{name: {n}, raw: "Subject: x\\n\\nx\\n", recipients: [a@b.c], expect: accept, '
            "expect_rules: {e}}}\n")
    text = (H + "rules: [{name: r, then: accept}]\ntests:\n"
            + case.format(n="t1", e="1") + case.format(n="t2", e='"1"'))
    assert any("test 't2': unknown rule '1' in expect_rules" in issue for issue in issues(text))
