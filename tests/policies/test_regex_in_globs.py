"""A glob written as a regular expression (filename: '.*\\.exe') matches what it says as
a glob, which is nearly nothing: it loads, as before, with a warning at its line."""

from __future__ import annotations

import pytest

from postwarden_policies.errors import REGEX_IN_GLOB
from postwarden_policies.loader import load_policy_set_from_sources
from postwarden_policies.patterns import compile_globs
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"


def _warnings(condition: str) -> list[PolicyIssue]:
    found: list[PolicyIssue] = []
    load_policy_set_from_sources([("p.yaml", HEAD + f"      {condition}\n")], warn=found.append)
    return found


def test_such_a_glob_misses_what_was_meant() -> None:
    assert not compile_globs([r".*\.exe"]).test("invoice.exe")


@pytest.mark.parametrize(("condition", "column", "shown"), [
    (r"attachment: {filename: ['*.pdf', '.*\.exe']}", 40, "'.*'"),
    (r"attachment: {filename: ['*\.exe']}", 31, r"'\\'"),
    ("attachment: {filename: '^invoice'}", 30, "'^'"),
    ("attachment: {content_type: 'application/(pdf|zip)'}", 34, "'|'"),
    ("client_name: '.*example'", 20, "'.*'"),
])
def test_a_glob_like_a_regex_is_a_warning(condition: str, column: int, shown: str) -> None:
    [warning] = _warnings(condition)
    assert (warning.line, warning.column, warning.code) == (7, column, REGEX_IN_GLOB)
    assert f"looks like a regular expression (it has {shown}): a glob has no escapes" \
        in warning.message


@pytest.mark.parametrize("condition", [
    "attachment: {filename: ['*.*', '*.exe', 'report?.[dx]ls', '$RECYCLE*']}",
    "client_name: '*.example.com'",
])
def test_globs_warn_of_nothing(condition: str) -> None:
    assert _warnings(condition) == []
