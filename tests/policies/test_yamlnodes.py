"""YAML at the node level: integers as YAML 1.2 writes them, bounded to 63 bits."""

from __future__ import annotations

import pytest

from postwarden_policies import PolicyIssue
from postwarden_policies.yamlnodes import MAX_INTEGER, TOO_LARGE, Reader, compose, construct


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
