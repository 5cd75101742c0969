"""YAML at the node level: YAML 1.2 core scalars, integers bounded to 63 bits."""

from __future__ import annotations

import pytest
import yaml

from postwarden_policies import PolicyIssue
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
