"""A pattern written as a YAML block (subject: |, the pattern below) ends with the line
break the block keeps: a Subject, read on one line, never has it, so the rule never
matched, silently. It loads, as before, with a warning at the pattern."""

from __future__ import annotations

import pytest

from postwarden_policies import evaluate_message, load_policy_set_from_sources
from postwarden_policies.errors import BLOCK_LINE_END
from postwarden_policies.facts import Envelope
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"


def _load(condition: str) -> tuple[list[PolicyIssue], tuple[str, ...]]:
    found: list[PolicyIssue] = []
    policies = load_policy_set_from_sources([("p.yaml", HEAD + condition)], warn=found.append)
    verdict = evaluate_message(policies, b"Subject: cheap viagra\r\n\r\nhi\r\n", Envelope())
    return found, verdict.rules


@pytest.mark.parametrize("style", ["|", ">", "|+"])
def test_a_block_pattern_ending_with_its_line_break_is_a_warning(style: str) -> None:
    warnings, matched = _load(f"      subject: {style}\n        viagra\n")
    assert matched == ()  # what the warning tells
    [warning] = warnings
    assert (warning.line, warning.column, warning.code) == (7, 16, BLOCK_LINE_END)
    assert warning.message == (
        "rule 'r': when.subject: this pattern ends with the line break its block (| or >) keeps, "
        "which a "
        "match then needs (a Subject or header value, read on one line, has none): write "
        "|- or >- to leave it out, or the pattern on the key's line")


@pytest.mark.parametrize("condition", ["      subject: |-\n        viagra\n",
                                       "      subject: viagra\n",
                                       '      body: "viagra\\n"\n'])
def test_without_the_blocks_line_break_nothing_is_said(condition: str) -> None:
    warnings, _ = _load(condition)
    assert warnings == []


@pytest.mark.parametrize(("condition", "where", "path"), [
    ("      attachment:\n        filename: |\n          *.exe\n", (8, 19),
     "when.attachment.filename: "),
    ("      attachment:\n        content_type: >\n          application/*\n", (8, 23),
     "when.attachment.content_type: "),
    ("      helo:\n        - |\n          *.example.com\n", (8, 11), ""),  # a list's item
])
def test_a_block_glob_ending_with_its_line_break_is_a_warning(
    condition: str, where: tuple[int, int], path: str
) -> None:
    """A glob never matches a file name, type or host name with a line break at its end:
    the rule never matched, silently, as a block pattern did."""
    [warning] = _load(condition)[0]
    assert (warning.line, warning.column, warning.code) == (*where, BLOCK_LINE_END)
    assert warning.message == (
        f"rule 'r': {path}this glob ends with the line break its block (| or >) keeps, which a "
        "match then needs (a file name, type or host name has none): write |- or >- to "
        "leave it out, or the glob on the key's line")


@pytest.mark.parametrize("condition", [
    "      attachment:\n        filename: |-\n          *.exe\n",
    "      attachment: {filename: ['*.exe']}\n",
])
def test_a_glob_without_the_blocks_line_break_gets_no_warning(condition: str) -> None:
    assert _load(condition)[0] == []
