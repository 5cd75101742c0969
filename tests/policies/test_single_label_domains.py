"""A list's name written where a domain goes (sender_domain: partners, as other filters
name lists) was read as the domain 'partners', which no mail comes from: the rule never
matched, silently. It loads, as before, with a warning at it (code single_label_domain)."""

from __future__ import annotations

import pytest

from postwarden_policies import evaluate_message, load_policy_set_from_sources
from postwarden_policies.errors import SINGLE_LABEL_DOMAIN
from postwarden_policies.facts import Envelope
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"


def _load(condition: str) -> tuple[list[PolicyIssue], tuple[str, ...]]:
    found: list[PolicyIssue] = []
    policies = load_policy_set_from_sources([("p.yaml", HEAD + f"      {condition}\n")],
                                            warn=found.append)
    verdict = evaluate_message(policies, b"Subject: x\r\n\r\nhi\r\n",
                               Envelope(sender="ann@partner.example", recipients=("b@c.test",)))
    return found, verdict.rules


@pytest.mark.parametrize(("condition", "column"), [
    ("sender_domain: partners", 22), ("recipient_domain: [c.test, internal]", 34),
    ("not: {from_domain: [Partners.]}", 27),
])
def test_a_domain_of_one_label_is_a_warning(condition: str, column: int) -> None:
    [warning], _ = _load(condition)
    assert (warning.line, warning.column, warning.code) == (7, column, SINGLE_LABEL_DOMAIN)
    assert "has no dot, as no mail domain has: a policy names no lists" in warning.message


def test_the_shared_list_the_warning_shows_loads_and_matches() -> None:
    text = ("version: 1\nname: p\nx-partners: &partners [partner.example, b.example]\n"
            "rules:\n  - {name: r, when: {sender_domain: *partners}, then: reject}\n")
    found: list[PolicyIssue] = []
    policies = load_policy_set_from_sources([("p.yaml", text)], warn=found.append)
    verdict = evaluate_message(policies, b"Subject: x\r\n\r\nhi\r\n",
                               Envelope(sender="ann@partner.example", recipients=("b@c.test",)))
    assert (found, verdict.rules) == ([], ("r",))


@pytest.mark.parametrize("condition", [
    "sender_domain: partner.example", "sender_domain: [.com, '*.partner.example']",
    "sender_domain: partner.example.",
])
def test_a_domain_with_a_dot_warns_of_nothing(condition: str) -> None:
    assert _load(condition)[0] == []
