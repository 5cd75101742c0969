"""A terminal rule with no `when` (an allow-all accept, a catch-all reject) before other
rules: they are never evaluated, for any message, and the set loaded silently. It now
loads with a warning at that rule (code unreachable_rule) naming the rules after it in
its run, the later enforce-mode policies' too; a rule whose conditions merely overlap a
later one's (an allow-list) is no such case and warns of nothing."""

from __future__ import annotations

from postwarden_policies import load_policy_set_from_sources
from postwarden_policies.errors import UNREACHABLE_RULE, PolicyIssue

HEAD = "version: 1\nname: {name}\npriority: {priority}\nmode: {mode}\nrules:\n"
EXE = ("  - name: block-executables\n    when: {attachment: {filename: ['*.exe']}}\n"
       "    then: reject\n")


def _policy(rules: str, name: str = "p", priority: int = 100, mode: str = "enforce") -> str:
    return HEAD.format(name=name, priority=priority, mode=mode) + rules


def _warnings(*sources: tuple[str, str]) -> list[PolicyIssue]:
    warnings: list[PolicyIssue] = []
    load_policy_set_from_sources(sources, warn=warnings.append)
    return [w for w in warnings if w.code == UNREACHABLE_RULE]


def test_an_accept_without_conditions_shadows_the_rules_after_it() -> None:
    rules = "  - name: allow-all\n    then: accept\n" + EXE
    [warning] = _warnings(("p.yaml", _policy(rules)))
    assert (warning.file, warning.line, warning.column) == ("p.yaml", 6, 11)
    assert warning.message == (
        "rule 'allow-all' has no conditions and ends evaluation (accept): no rule after it "
        "is ever evaluated: block-executables; give it a when:, or move it last")


def test_later_enforced_policies_are_named_and_report_mode_ones_are_not() -> None:
    first = _policy("  - name: refuse-all\n    then: reject\n", name="a", priority=10)
    later = _policy(EXE, name="b", priority=20)
    trial = _policy(EXE.replace("block-executables", "try-executables"), name="c",
                    priority=30, mode="report")
    [warning] = _warnings(("a.yaml", first), ("b.yaml", later), ("c.yaml", trial))
    assert warning.file == "a.yaml"
    assert "ever evaluated: block-executables (policy b);" in warning.message


def test_no_warning_where_nothing_is_shadowed_for_every_message() -> None:
    allow_list = ("  - name: partners\n    when: {sender_domain: [partner.example]}\n"
                  "    then: accept\n") + EXE
    last = EXE + "  - name: default-accept\n    then: accept\n"
    tag_all = "  - name: tag\n    then: {add_header: {X-Seen: 'yes'}}\n" + EXE
    for rules in (allow_list, last, tag_all):
        assert _warnings(("p.yaml", _policy(rules))) == []
    # A report-mode policy's catch-all ends only its own run.
    trial = _policy("  - name: refuse-all\n    then: reject\n", name="a", priority=10,
                    mode="report")
    assert _warnings(("a.yaml", trial), ("b.yaml", _policy(EXE, name="b"))) == []
