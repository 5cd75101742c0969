"""YAML at the node level: YAML 1.2 core scalars, integers bounded to 63 bits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from postwarden_policies import PolicyIssue, yamlnodes
from postwarden_policies.loader import check_policy_text
from postwarden_policies.yamlnodes import (
    MAX_INTEGER,
    TOO_LARGE,
    Reader,
    compose,
    construct,
    dump,
)


def scalar(text: str) -> object:
    node, issues = compose("t.yaml", f"v: {text}\n")
    assert node is not None and not issues
    return Reader("t.yaml").scalar(node.value[0][1])


INTEGERS = [
    pytest.param(str(MAX_INTEGER), MAX_INTEGER, id="largest"),
    pytest.param(f"-{MAX_INTEGER}", -MAX_INTEGER, id="smallest"),
    pytest.param("0x7fffffffffffffff", MAX_INTEGER, id="largest-hex"),
    pytest.param("0o777777777777777777777", MAX_INTEGER, id="largest-octal"),
    pytest.param("0" * 30 + "1", 1, id="leading-zeros-do-not-count"),
    pytest.param(str(MAX_INTEGER + 1), TOO_LARGE, id="past-63-bits"),
    pytest.param(f"-{MAX_INTEGER + 1}", TOO_LARGE, id="past-63-bits-negative"),
    pytest.param("0x8000000000000000", TOO_LARGE, id="past-63-bits-hex"),
    pytest.param("0o1000000000000000000000", TOO_LARGE, id="past-63-bits-octal"),
    pytest.param("9" * 5000, TOO_LARGE, id="past-pythons-digit-limit"),
]


@pytest.mark.parametrize(("text", "expected"), INTEGERS)
def test_integers_are_bounded(text: str, expected: object) -> None:
    assert scalar(text) == expected


def test_an_int_tag_on_other_text_is_unreadable_not_too_large() -> None:
    value = scalar("!!int abc")
    assert not isinstance(value, int) and value is not TOO_LARGE


def test_a_huge_integer_in_a_plain_document_is_an_issue_not_a_crash() -> None:
    # Settings files are read with construct(); before, int() raised ValueError out of it.
    node, _ = compose("s.yaml", "workers: 2\ntimeout: " + "9" * 5000 + "\n")
    assert node is not None
    assert construct("s.yaml", node) == (
        None, [PolicyIssue("s.yaml", 2, 10, f"integer too large: at most {MAX_INTEGER}")]
    )


SCALARS = [
    pytest.param("true", True, id="true"),
    pytest.param("True", True, id="True"),
    pytest.param("FALSE", False, id="FALSE"),
    *(pytest.param(word, word, id=f"{word}-is-text")
      for word in ("yes", "No", "NO", "on", "Off", "OFF", "y", "n")),
    pytest.param("tRUE", "tRUE", id="no-mixed-case-boolean"),
    pytest.param("1.5", 1.5, id="float"),
    pytest.param("1e3", 1000.0, id="exponent-without-dot"),
    pytest.param("-.5E-1", -0.05, id="leading-dot"),
    pytest.param("-.inf", float("-inf"), id="minus-infinity"),
    pytest.param("1_000.5", "1_000.5", id="underscore-float-is-text"),
    pytest.param("1:30.5", "1:30.5", id="sexagesimal-float-is-text"),
    pytest.param("1_000", "1_000", id="underscore-int-is-text"),
    pytest.param("010", 10, id="leading-zero-is-decimal"),
]


@pytest.mark.parametrize(("text", "expected"), SCALARS)
def test_scalars_read_as_yaml_1_2_core_schema(text: str, expected: object) -> None:
    value = scalar(text)
    assert (type(value), value) == (type(expected), expected)


@pytest.mark.parametrize("text", ["!!bool yes", "!!float 1:30.5", "!!float 1_0.5"])
def test_an_explicit_tag_on_yaml_1_1_only_text_is_unreadable(text: str) -> None:
    value = scalar(text)
    assert not isinstance(value, bool | float | str)


@pytest.mark.parametrize("text", ["!!timestamp soon", "!!timestamp 2024-01-01T25:00:00",
                                  "!<tag:yaml.org,2002:timestamp> 1"])
def test_a_timestamp_tag_on_other_text_is_an_issue_not_a_crash(text: str) -> None:
    # PyYAML's constructor raised AttributeError (no match) or ValueError (hour 25): a
    # traceback from `check` (exit 1) and from reading a settings file.
    assert not isinstance(scalar(text), str)
    issues = check_policy_text("t.yaml", f"version: 1\nname: t\ndescription: {text}\n")
    assert [(i.line, i.column) for i in issues] == [(3, 14)]
    node, _ = compose("s.yaml", f"listen: {text}\n")
    assert node is not None
    value, [issue] = construct("s.yaml", node)
    assert value is None and (issue.line, issue.column) == (1, 9)
    assert "expected a timestamp" in issue.message


def test_settings_documents_read_yaml_1_1_booleans_as_text() -> None:
    node, _ = compose("s.yaml", "instance_name: no\nid_header: off\nratio: 1:30.5\n")
    assert node is not None
    assert construct("s.yaml", node) == (
        {"instance_name": "no", "id_header": "off", "ratio": "1:30.5"}, []
    )


def test_dump_reads_back_unchanged_under_yaml_1_2_and_1_1() -> None:
    # Plain, "1e3" and "0o17" are text to YAML 1.1 and numbers to YAML 1.2; "off" and "y"
    # the other way round: each must come back as the string it was.
    data = {"texts": ["off", "y", "N", "yEs", "010", "0o17", "1e3", "1:30", "1_000", ".inf",
                      "true", "null", "", "2024-01-01"],
            "values": [True, False, 10, -3, 1.5, None], "nested": {"on": "no"}}
    text = dump(data)
    node, issues = compose("d.yaml", text)
    assert node is not None and not issues
    assert construct("d.yaml", node) == (data, [])
    assert yaml.safe_load(text) == data


@pytest.mark.parametrize("text", ["rules: [\n", "a: \ud800\n", "a: \x00\n"],
                         ids=["unclosed-flow", "lone-surrogate", "nul"])
def test_a_source_libyaml_refuses_is_one_issue_in_pyyamls_words(text: str) -> None:
    # libyaml parses; its refusals are explained by PyYAML's reader, scanner and parser,
    # which say what they expected and what they found, and take a str libyaml cannot.
    node, issues = compose("t.yaml", text)
    assert node is None and len(issues) == 1
    assert "but found" in issues[0].message or "not allowed" in issues[0].message


def test_an_alias_is_placed_where_it_is_written() -> None:
    node, issues = compose("t.yaml", "a: &r [1]\nb: *r\n")
    assert node is not None and not issues
    alias = node.value[1][1]
    assert (alias.start_mark.line, alias.start_mark.column) == (1, 3)
    assert alias.value is node.value[0][1].value  # shared, not copied


REPO = Path(__file__).resolve().parents[2]
EVERY_FORM = r"""
plain: text
ints: [010, 0x1f, 0o17, -3, 1_000]
floats: [1.5, .inf, -.Inf, .nan, 1e3]
bools: [true, False, yes, off, ~, null]
quoted: ['single ''q''', "double \t \u00e9"]
block: |
  two
  lines
folded: >-
  one
  line
anchor: &a {k: [1, 2]}
alias: *a
tagged: !!str 12
"""


def _shape(node: yaml.Node) -> object:
    """A node tree as comparable values: tag, value, and where it starts."""
    where = (node.start_mark.line, node.start_mark.column)
    if isinstance(node, yaml.ScalarNode):
        return (node.tag, node.value, where)
    if isinstance(node, yaml.SequenceNode):
        return (node.tag, [_shape(item) for item in node.value], where)
    return (node.tag, [(_shape(k), _shape(v)) for k, v in node.value], where)


SHIPPED = [path for top in ("contrib", "policies", "tests")
           for path in (REPO / top).rglob("*.yaml")]


@pytest.mark.parametrize("path", [*sorted(SHIPPED), None],
                         ids=lambda path: str(path.relative_to(REPO)) if path else "every-form")
def test_libyaml_composes_as_pyyaml_does(path: Path | None) -> None:
    # libyaml does the reading, PyYAML only explains refusals: the two must agree on
    # every document we ship (and on one with every scalar form and an alias).
    text = path.read_text() if path else EVERY_FORM
    fast = yaml.compose(text, Loader=yamlnodes._Loader)
    explained = yaml.compose(text, Loader=yamlnodes._ExplainingLoader)
    assert fast is not None and explained is not None
    assert _shape(fast) == _shape(explained)


@pytest.mark.parametrize(("value", "told"), [
    ("!!int abc", "expected an integer, got 'abc' tagged !!int, which is not an integer"),
    ("!!bool 'yes'", "expected an integer, got 'yes' tagged !!bool, which is not a boolean"),
    ("!!float 1:30", "expected an integer, got '1:30' tagged !!float, which is not a number"),
    ("!!bool true", "expected an integer, got a boolean"),
    ("9" * 30, f"integer too large: at most {MAX_INTEGER}, got {'9' * 30}"),
])
def test_an_explicit_tag_its_text_does_not_read_as_is_told_so(value: str, told: str) -> None:
    # Before: "expected an integer, got an integer".
    issues = check_policy_text("t.yaml", f"version: 1\nname: t\npriority: {value}\n")
    assert [i.message for i in issues] == [f"priority: {told}"]
