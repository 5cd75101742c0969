"""A | left over when editing a list of words (viagra|cialis|) makes a pattern match
the empty text, so every text: its rule holds for every message. It loads, as before,
with a warning at its line; a pattern meant to match anything (.*) has none."""

from __future__ import annotations

import pytest

from postwarden_policies import evaluate_message, load_policy_set_from_sources
from postwarden_policies.errors import MATCHES_EVERY_TEXT
from postwarden_policies.facts import Envelope
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"


def _warnings(condition: str) -> list[PolicyIssue]:
    found: list[PolicyIssue] = []
    load_policy_set_from_sources([("p.yaml", HEAD + f"      {condition}\n")], warn=found.append)
    return found


def test_such_a_rule_holds_for_every_message() -> None:
    """Why the warning: the rule rejects mail it names nothing of."""
    policies = load_policy_set_from_sources(
        [("p.yaml", HEAD + "      subject: '(?i)viagra|cialis|'\n")])
    verdict = evaluate_message(policies, b"Subject: lunch\r\n\r\nhi\r\n", Envelope())
    assert verdict.rules == ("r",)


@pytest.mark.parametrize("condition", [
    "subject: '(?i)viagra|cialis|'", "body: '|free money'", "body: 'a||b'",
    "header: {X-A: '(?i:|x)'}",
])
def test_an_empty_alternative_is_a_warning(condition: str) -> None:
    [warning] = _warnings(condition)
    assert (warning.line, warning.code) == (7, MATCHES_EVERY_TEXT)
    assert "has an empty alternative (a | with nothing on one side), so it matches every text" \
        in warning.message


@pytest.mark.parametrize("condition", [
    "header: {X-Spam: '.*'}", "subject: '^$'", "body: 'colo(?:u|)r'", r"body: 'a\|'",
    "subject: '[|]'", "subject: 'a|b'",
])
def test_a_pattern_meant_as_written_warns_of_nothing(condition: str) -> None:
    assert _warnings(condition) == []
