"""max_mime_parts and max_mime_depth past what the parser reads act as the parser's cap:
documented, but loaded silently, a limit of 5000 parts acted on a message of 1001. It
loads, as before, with a warning saying what it acts as."""

from __future__ import annotations

import pytest

from postwarden_policies.errors import PAST_PARSER_CAP
from postwarden_policies.loader import load_policy_set_from_sources
from postwarden_policies.yamlnodes import PolicyIssue


def _warnings(limits: str) -> list[PolicyIssue]:
    found: list[PolicyIssue] = []
    load_policy_set_from_sources([("p.yaml", f"version: 1\nname: p\nlimits:\n  {limits}\n")],
                                 warn=found.append)
    return found


@pytest.mark.parametrize(("limits", "told"), [
    ("max_mime_parts: 5000", "5000 acts as 1000: the parser reads at most 1000 parts"),
    ("max_mime_depth: 101", "101 acts as 100: the parser reads at most 100 levels"),
])
def test_a_limit_past_the_parsers_cap_is_a_warning(limits: str, told: str) -> None:
    [warning] = _warnings(limits)
    assert (warning.line, warning.column, warning.code) == (4, 19, PAST_PARSER_CAP)
    assert warning.message == (f"limits.{limits.split(':', maxsplit=1)[0]}: {told}, and "
                               "on_structure_limit applies past them")


@pytest.mark.parametrize("limits", ["max_mime_parts: 1000", "max_mime_depth: 100",
                                    "max_recipients: 5000"])
def test_a_limit_within_it_warns_of_nothing(limits: str) -> None:
    assert _warnings(limits) == []
