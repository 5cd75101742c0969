"""The warning for HTML sanitizing that malformed mail slips past.

A message the parser flags ``malformed`` is never sanitized (a broken structure
cannot be rewritten faithfully): one bad part (an attachment whose base64 does not
decode) would deliver a message's HTML, ``<script>`` and all, as it came, unless a
rule holds or refuses it. Only the plain form of such a rule is recognised: one whose
``when`` is a ``flag`` list naming ``malformed`` and nothing else, with a terminal
action other than ``accept``, in an enforce-mode policy and before any rule that may
``accept`` (the first terminal action ends evaluation). A rule with more conditions
covers only some malformed messages, so it does not count.
"""

from __future__ import annotations

from . import conditions as c
from .errors import MALFORMED_UNSANITIZED, PolicyIssue
from .model import Policy, Rule
from .policyset import PolicySet
from .verdicts import Action

_ADVICE = ("malformed messages are never sanitized, and no enforce-mode rule holds or "
           "refuses every one before a rule may accept it: one malformed part (an "
           "attachment with broken base64) gets a message's HTML delivered unsanitized; "
           "add first to the rules: {name: hold-broken-mime, when: {flag: [malformed]}, "
           "then: quarantine}")


def _holds_every_malformed(rule: Rule) -> bool:
    return isinstance(rule.when, c.FlagIn) and "malformed" in rule.when.flags


def _malformed_held(rules: tuple[Rule, ...]) -> bool:
    """Whether the enforced rules, in order, hold or refuse every malformed message
    before one may accept it (by the plain form above)."""
    for rule in rules:
        if rule.then.terminal is Action.ACCEPT:
            return False
        if rule.then.terminal is not None and _holds_every_malformed(rule):
            return True
    return False


def malformed_unsanitized(policy_set: PolicySet) -> list[PolicyIssue]:
    """A warning at each enforce-mode policy's ``html: true`` when the set sanitizes
    HTML and no rule holds or refuses every malformed message."""
    if policy_set.html_options is None or _malformed_held(policy_set.enforced_rules):
        return []
    sanitizing: list[Policy] = [p for p in policy_set.policies
                                if p.sanitize.html and not p.report_only]
    return [PolicyIssue(p.source, *p.sanitize.where, _ADVICE, code=MALFORMED_UNSANITIZED)
            for p in sanitizing]
