"""Header edits of a delivered message: rule headers, the Subject prefix, the flags tag.

Edits are only emitted when they change something, so a message that no rule
touches keeps its header section byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

from .facts import MessageFacts
from .model import Rule
from .policyset import PolicySet
from .verdicts import AddHeader, ChangeHeader, Edit, RemoveHeader

FLAGS_HEADER = "X-Postwarden-Flags"


def _subject_edit(facts: MessageFacts, prefixes: list[str]) -> Edit | None:
    prefixes = list(dict.fromkeys(prefixes))  # rules (or policies) sharing a prefix add it once
    subjects = [h for h in facts.headers if h.name.lower() == "subject"]
    if not subjects:
        return AddHeader("Subject", "".join(reversed(prefixes)).rstrip())
    raw = subjects[0].raw_value.lstrip()
    present = _leading_prefixes(raw, prefixes)
    missing = [prefix for prefix in prefixes if prefix not in present]
    if not missing:
        return None
    return ChangeHeader("Subject", 1, "".join(reversed(missing)) + raw)


def _leading_prefixes(subject: str, prefixes: list[str]) -> set[str]:
    """Which of ``prefixes`` the Subject already starts with, in any order.

    Never twice, judged on the raw value: an encoded word that Python alone
    decodes to the prefix (UTF-7, an unknown charset) must not keep it off. A
    prefix may end the Subject without its trailing space: what we write for a
    missing or empty Subject, seen again on the next hop.
    """
    present: set[str] = set()
    rest = subject
    while found := next((p for p in prefixes if p not in present
                         and (rest.startswith(p) or rest.rstrip() == p.rstrip())), None):
        present.add(found)
        rest = rest[len(found):].lstrip()
    return present


def header_edits(policy_set: PolicySet, facts: MessageFacts, rules: Iterable[Rule]) -> list[Edit]:
    present = {h.name.lower() for h in facts.headers}
    edits: list[Edit] = []
    if policy_set.tag_flags and FLAGS_HEADER.lower() in present:
        # A sender must not forge our tag, on a message we do not flag either.
        edits.append(RemoveHeader(FLAGS_HEADER))
        present.discard(FLAGS_HEADER.lower())
    prefixes: list[str] = []
    for rule in rules:
        for name in rule.then.remove_headers:
            if name.lower() in present:
                edits.append(RemoveHeader(name))
                present.discard(name.lower())
        for name, value in rule.then.add_headers:
            edits.append(AddHeader(name, value))
            present.add(name.lower())
        if rule.then.subject_prefix:
            prefixes.append(rule.then.subject_prefix)
    if prefixes and (subject := _subject_edit(facts, prefixes)) is not None:
        edits.append(subject)
    if policy_set.tag_flags and facts.flags:
        edits.append(AddHeader(FLAGS_HEADER, ", ".join(sorted(facts.flags))))
    return edits
