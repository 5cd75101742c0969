"""Running the `tests:` sections of policy files.

Each case runs against its own policy alone, so a file's tests describe that
file whatever else is loaded beside it. A case passes when every expectation
it states holds; problems say what differed.

With several policies loaded, each case also runs against the whole set, as
a milter loading them would run: when that gives another action than the
policy alone and than the case expects, the result carries the set's verdict
(``whole_set``), so a test that passes alone is not taken for what the
deployment does. Only the action is compared: the other policies' rules,
report-mode ones among them, legitimately add rules and edits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from .delivery import apply_edits
from .engine import evaluate
from .facts import Envelope
from .mimeparse import parse_message
from .model import Policy, PolicyTest
from .policyset import PolicySet
from .verdicts import AttachmentStripped, Verdict


@dataclass(frozen=True, slots=True)
class CaseResult:
    policy: Policy
    case: PolicyTest
    verdict: Verdict | None  # None when the message could not be read
    problems: tuple[str, ...]
    whole_set: Verdict | None = None  # the loaded set's verdict, when its action differs

    @property
    def passed(self) -> bool:
        return not self.problems


def _message(case: PolicyTest) -> bytes:
    if case.message is not None:
        return case.message.read_bytes()
    return (case.raw or "").encode("utf-8", "surrogateescape")


def _problems(case: PolicyTest, raw: bytes, verdict: Verdict) -> Iterator[str]:
    if verdict.action is not case.expect:
        yield f"expected {case.expect}, got {verdict.action}"
    if case.expect_rules is not None and verdict.rules != case.expect_rules:
        yield f"expected rules [{', '.join(case.expect_rules)}], got [{', '.join(verdict.rules)}]"
    reply = str(verdict.smtp_reply) if verdict.smtp_reply else ""
    if case.expect_reply is not None and not reply.startswith(case.expect_reply):
        yield f"expected reply {case.expect_reply!r}, got {reply or 'none'!r}"
    if case.expect_headers:
        delivered = parse_message(apply_edits(raw, verdict), Envelope())
        for name, value in case.expect_headers:
            values = delivered.header_values(name)
            if value not in values:
                yield f"expected header {name}: {value!r}, got {list(values)!r}"
    if case.expect_stripped is not None:
        stripped = tuple(c.filename for c in verdict.changes if isinstance(c, AttachmentStripped))
        if sorted(stripped) != sorted(case.expect_stripped):
            yield f"expected stripped {list(case.expect_stripped)!r}, got {list(stripped)!r}"


def run_case(policy_set: PolicySet, policy: Policy, case: PolicyTest) -> CaseResult:
    try:
        raw = _message(case)
    except OSError as exc:
        return CaseResult(policy, case, None, (f"cannot read {case.message}: {exc.strerror}",))
    envelope = Envelope(
        sender=case.sender,
        recipients=case.recipients,
        client_ip=case.client_ip,
        client_name=case.client_name,
        helo=case.helo,
        auth_user=case.auth_user,
    )
    facts = parse_message(
        raw, envelope, max_parts=policy_set.max_mime_parts, max_depth=policy_set.max_mime_depth
    )
    if case.duplicate:
        facts = replace(facts, duplicate=True)
    verdict = evaluate(policy_set, facts)
    return CaseResult(policy, case, verdict, tuple(_problems(case, raw, verdict)))


def _in_whole_set(result: CaseResult, policy_set: PolicySet) -> CaseResult:
    """``result`` with the set's verdict when the set takes another action than the
    policy alone and than the case expects."""
    whole = run_case(policy_set, result.policy, result.case).verdict
    if result.verdict is None or whole is None:
        return result
    if whole.action in (result.verdict.action, result.case.expect):
        return result
    return replace(result, whole_set=whole)


def run_policy_tests(policy_set: PolicySet) -> list[CaseResult]:
    """Every case of every policy in the set, in policy order: against its policy alone,
    and against the whole set when it holds more than that policy."""
    results: list[CaseResult] = []
    for policy in policy_set.policies:
        alone = PolicySet.of([policy], policy_set.content_hash)
        for case in policy.tests:
            result = run_case(alone, policy, case)
            if len(policy_set.policies) > 1:
                result = _in_whole_set(result, policy_set)
            results.append(result)
    return results
