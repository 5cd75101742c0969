"""A Subject tag written in a pattern as it reads ('[SPAM] offer') is a class matching one
of its letters: the rule held for any Subject with an S, silently. It loads, as before,
with a warning at its line (code bracketed_word); a class meant as one has none."""

from __future__ import annotations

import pytest

from postwarden_policies import evaluate_message, load_policy_set_from_sources
from postwarden_policies.errors import BRACKETED_WORD
from postwarden_policies.facts import Envelope
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"


def _load(condition: str) -> tuple[list[PolicyIssue], tuple[str, ...]]:
    found: list[PolicyIssue] = []
    policies = load_policy_set_from_sources([("p.yaml", HEAD + f"      {condition}\n")],
                                            warn=found.append)
    verdict = evaluate_message(policies, b"Subject: Sale\r\n\r\nhi\r\n", Envelope())
    return found, verdict.rules


@pytest.mark.parametrize(("condition", "word"), [
    ("subject: '[SPAM]'", "SPAM"), ("subject: '^[External] '", "External"),
    ("header: {X-Tag: '(?i)[Sus] '}", "Sus"),
])
def test_a_word_in_brackets_is_a_warning(condition: str, word: str) -> None:
    [warning], matched = _load(condition)
    assert (warning.line, warning.code) == (7, BRACKETED_WORD)
    assert warning.message.endswith(
        f"has [{word}], a class that matches one character of {word}, not that text: "
        f"write \\[{word}\\] for the tag [{word}] with its brackets")
    if condition.startswith("subject: '[SPAM]"):
        assert matched == ("r",)  # 'Sale' has an S: why the warning


@pytest.mark.parametrize("condition", [
    r"subject: '\[SPAM\]'", "subject: '[aeiou]'", "subject: '[0-9]{5}'", "subject: '[A-Z]'",
    "subject: '[[:upper:]]'", "subject: '[OK]'",
])
def test_an_escaped_tag_or_a_class_meant_as_one_warns_of_nothing(condition: str) -> None:
    assert _load(condition)[0] == []
