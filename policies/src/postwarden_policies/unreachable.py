"""The warning for rules that no message reaches.

Rules run in order and the first terminal action ends evaluation: the enforce-mode
policies' rules as one run (policies by priority, then name), each report-mode policy's
on their own (engine). A terminal rule with no ``when`` matches every message, so no rule
after it in its run is ever evaluated; the warning is at that rule, naming those after
it. It is the only shadowing told without false positives: a rule whose conditions
merely overlap a later one's (an allow-list ``accept`` on ``sender_domain`` before a rule
refusing executables) stops the later one only for the messages both match, which is
often what an allow-list is for; docs/policy-language.md tells of that ordering.
"""

from __future__ import annotations

from collections.abc import Iterator

from .conditions import ALWAYS
from .errors import UNREACHABLE_RULE, PolicyIssue
from .model import Policy, Rule
from .policyset import PolicySet

SHOWN_RULES = 3  # of those never evaluated, by name


def _runs(policy_set: PolicySet) -> Iterator[list[tuple[Policy, Rule]]]:
    """The rules evaluated as one run, in order, each with its policy."""
    yield [(p, rule) for p in policy_set.policies if not p.report_only for rule in p.rules]
    for policy in policy_set.report_policies:
        yield [(policy, rule) for rule in policy.rules]


def _warning(policy: Policy, rule: Rule, after: list[tuple[Policy, Rule]]) -> PolicyIssue:
    names = [r.name if p is policy else f"{r.name} (policy {p.name})" for p, r in after]
    shown = ", ".join(names[:SHOWN_RULES])
    more = f" and {len(names) - SHOWN_RULES} more" if len(names) > SHOWN_RULES else ""
    message = (f"rule {rule.name!r} has no conditions and ends evaluation ("
               f"{rule.then.terminal}): no rule after it is ever evaluated: {shown}{more}; "
               "give it a when:, or move it last")
    return PolicyIssue(policy.source, *rule.where, message, code=UNREACHABLE_RULE)


def unreachable_rules(policy_set: PolicySet) -> list[PolicyIssue]:
    """A warning at each terminal rule without conditions that rules follow in its run."""
    warnings: list[PolicyIssue] = []
    for run in _runs(policy_set):
        for at, (policy, rule) in enumerate(run):
            if rule.then.terminal is not None and rule.when is ALWAYS:
                if run[at + 1:]:
                    warnings.append(_warning(policy, rule, run[at + 1:]))
                break
    return warnings
