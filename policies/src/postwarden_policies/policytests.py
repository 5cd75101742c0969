"""Running the `tests:` sections of policy files.

Each case runs against its own policy alone, so a file's tests describe that
file whatever else is loaded beside it. A case passes when every expectation
it states holds; problems say what differed.

With several policies loaded, each case also runs against the whole set, as
a milter loading them would run, and is checked on everything it states that
the set decides, so a test that passes alone is not taken for what the
deployment does: the action, reply, stripped attachments, headers (present
and absent) and flags as alone, and each rule of ``expect_rules`` and each
endpoint of ``expect_notify`` must be there, though not only those (the other
policies' rules, report-mode ones among them, legitimately match too, and
notify endpoints of their own). When the set breaks an expectation the policy
alone meets, the result carries the set's verdict (``whole_set``) and what it
breaks. A report-mode policy decides nothing in the set (a copy on trial beside the
enforced policy it would replace, say): its cases there only need its ``report:`` rules
among those matched, whatever the enforced policies do with the message.

Each problem is a :class:`Failure`: the key of the expectation it breaks and
what differed, for a reader (its text) and for a program (``--format json``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from .conditionformat import SEVERAL_HINT, several_in_one
from .delivery import apply_edits
from .engine import as_received, evaluate, parse_for
from .facts import Envelope
from .headers import delivered_values
from .model import Mode, Policy, PolicyTest
from .policyset import PolicySet
from .render import escaped
from .verdicts import AttachmentStripped, Quarantine, Verdict


@dataclass(frozen=True, slots=True)
class Failure:
    """An expectation a case states that the verdict breaks."""

    expectation: str  # the case's key ("expect", "expect_rules", ...); "message": unread
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class CaseResult:
    policy: Policy
    case: PolicyTest
    verdict: Verdict | None  # None when the message could not be read
    problems: tuple[Failure, ...]
    # The loaded set's verdict, when it breaks an expectation the policy alone meets;
    # what it breaks but the action, which the verdict shows (see other_action).
    whole_set: Verdict | None = None
    whole_set_problems: tuple[Failure, ...] = ()
    # What the engine logged evaluating it (a rewrite that failed), each once.
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def other_action(self) -> bool:
        """Whether the set takes another action than the policy alone and the case."""
        return (
            self.whole_set is not None
            and self.verdict is not None
            and self.policy.mode is not Mode.REPORT  # decides nothing in the set
            and self.whole_set.action not in (self.verdict.action, self.case.expect)
        )


def _message(case: PolicyTest) -> bytes:
    if case.message is not None:
        return case.message.read_bytes()
    return (case.raw or "").encode("utf-8", "surrogateescape")


def _problems(case: PolicyTest, raw: bytes, verdict: Verdict) -> Iterator[Failure]:
    if verdict.action is not case.expect:
        yield Failure("expect", f"expected {case.expect}, got {_action(verdict)}")
    if case.expect_rules is not None and verdict.rules != case.expect_rules:
        yield Failure("expect_rules", f"expected rules [{', '.join(case.expect_rules)}], "
                                      f"got [{', '.join(verdict.rules)}]")
    if case.expect_notify is not None and set(verdict.notify) != set(case.expect_notify):
        yield Failure("expect_notify", f"expected notify [{', '.join(case.expect_notify)}], "
                                       f"got [{', '.join(verdict.notify)}]")
    yield from _outcome_problems(case, raw, verdict)


def _action(verdict: Verdict) -> str:
    """The verdict's action, with its hold reason (a rewrite that failed, say)."""
    decision = verdict.decision
    if isinstance(decision, Quarantine):
        return f"{decision.action}: {decision.reason}"
    return str(decision.action)


def _whole_set_problems(case: PolicyTest, raw: bytes, verdict: Verdict,
                        alone: Verdict) -> Iterator[Failure]:
    """The set's problems but the action: every expected rule must match and every
    expected endpoint be notified, though the other policies' may be too (and come
    between them); not told again when the policy alone misses one already."""
    yield from _among("expect_rules", ("rules", "matched"), case.expect_rules, verdict.rules,
                      alone=alone.rules)
    yield from _among("expect_notify", ("notify", "notified"), case.expect_notify, verdict.notify,
                      alone=alone.notify)
    yield from _outcome_problems(case, raw, verdict)


def _among(expectation: str, what: tuple[str, str], expected: Sequence[str] | None,
           got: Sequence[str], *, alone: Sequence[str]) -> Iterator[Failure]:
    """A failure when the set misses an expected item that the policy alone has; ``what``
    names the items and what became of them (("rules", "matched"))."""
    expected = expected or ()
    missing = [item for item in expected if item not in got]
    if any(item in alone for item in missing):
        noun, done = what
        yield Failure(expectation, f"expected {noun} [{', '.join(expected)}] among those "
                                   f"{done}, got [{', '.join(got)}]")


def _outcome_problems(case: PolicyTest, raw: bytes, verdict: Verdict) -> Iterator[Failure]:
    """Reply, headers, flags and stripped attachments: checked alike alone and in the
    whole set."""
    reply = str(verdict.smtp_reply) if verdict.smtp_reply else ""
    if case.expect_reply is not None and not reply.startswith(case.expect_reply):
        yield Failure("expect_reply",
                      f"expected reply {case.expect_reply!r}, got {reply or 'none'!r}")
    yield from _header_problems(case, raw, verdict)
    missing = [flag for flag in case.expect_flags if flag not in verdict.flags]
    if missing:
        yield Failure("expect_flags", f"expected flags [{', '.join(case.expect_flags)}] among "
                                      f"the verdict's, got [{', '.join(sorted(verdict.flags))}]")
    if case.expect_stripped is not None:
        stripped = tuple(c.filename for c in verdict.changes if isinstance(c, AttachmentStripped))
        if sorted(stripped) != sorted(case.expect_stripped):
            hint = _several_names_hint(case.expect_stripped, stripped)
            yield Failure("expect_stripped", f"expected stripped {list(case.expect_stripped)!r}, "
                                             f"got {list(stripped)!r}{hint}")


def _several_names_hint(expected: Sequence[str], stripped: Sequence[str]) -> str:
    """The list hint for names written as one text ("a.exe, b.exe"): a file name may hold
    a comma, so it is no error to load, but told when a name it splits into was stripped."""
    for name in expected:
        parts = several_in_one(name)
        if name not in stripped and len(parts) > 1 and any(p in stripped for p in parts):
            return SEVERAL_HINT
    return ""


def _header_problems(case: PolicyTest, raw: bytes, verdict: Verdict) -> Iterator[Failure]:
    if not (case.expect_headers or case.expect_headers_absent):
        return
    delivered = apply_edits(raw, verdict)
    for name, value in case.expect_headers:
        values = delivered_values(delivered, name)
        if value not in values:
            yield Failure("expect_headers",
                          f"expected header {name}: {value!r}, got {values!r}")
    for name in case.expect_headers_absent:
        if values := delivered_values(delivered, name):
            yield Failure("expect_headers_absent",
                          f"expected no header {name}, got {values!r}")


class _Collected(logging.Handler):
    """This thread's records, formatted (a traceback too); another thread's are its own."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(self.format(record))


@contextlib.contextmanager
def _engine_warnings() -> Iterator[list[str]]:
    """The warnings the engine logs meanwhile: the milter's log lines name the message
    by its queue id, a case has none, so the case's result carries them instead."""
    collected = _Collected()
    package = logging.getLogger(__package__)
    package.addHandler(collected)
    try:
        yield collected.lines
    finally:
        package.removeHandler(collected)


def run_case(
    policy_set: PolicySet, policy: Policy, case: PolicyTest, whole_set: PolicySet | None = None
) -> CaseResult:
    """``case`` against ``policy_set`` (its policy alone) and, given one, ``whole_set``."""
    try:
        raw = _message(case)
    except OSError as exc:
        # On one line: a line break in its name would forge a report line of its own.
        unread = Failure("message", f"cannot read {escaped(str(case.message))}: {exc.strerror}")
        return CaseResult(policy, case, None, (unread,))
    with _engine_warnings() as warnings:
        verdict = _verdict(policy_set, case, raw)
        result = CaseResult(policy, case, verdict, tuple(_problems(case, raw, verdict)))
        if whole_set is not None:
            result = _in_whole_set(result, raw, whole_set)
    # The set often says again what the policy alone said.
    return replace(result, warnings=tuple(dict.fromkeys(warnings)))


def _verdict(policy_set: PolicySet, case: PolicyTest, raw: bytes) -> Verdict:
    envelope = Envelope(
        sender=case.sender,
        recipients=case.recipients,
        client_ip=case.client_ip,
        client_name=case.client_name,
        helo=case.helo,
        auth_user=case.auth_user,
    )
    facts = parse_for(policy_set, as_received(raw), envelope)
    if case.duplicate:
        facts = replace(facts, duplicate=True)
    return evaluate(policy_set, facts)


def _in_whole_set(result: CaseResult, raw: bytes, policy_set: PolicySet) -> CaseResult:
    """``result`` with the set's verdict and problems, when the set breaks an expectation
    the policy alone meets (one it breaks too is reported once, as the policy's)."""
    whole = _verdict(policy_set, result.case, raw)
    assert result.verdict is not None  # noqa: S101 - run_case read the message
    found = (_among("expect_rules", ("rules", "matched"), result.case.expect_rules, whole.rules,
                    alone=result.verdict.rules)
             if result.policy.mode is Mode.REPORT
             else _whole_set_problems(result.case, raw, whole, result.verdict))
    problems = tuple(p for p in found if p not in result.problems)
    in_set = replace(result, whole_set=whole, whole_set_problems=problems)
    return in_set if problems or in_set.other_action else result


def run_policy_tests(policy_set: PolicySet) -> list[CaseResult]:
    """Every case of every policy in the set, in policy order: against its policy alone,
    and against the whole set when it holds more than that policy."""
    results: list[CaseResult] = []
    for policy in policy_set.policies:
        alone = PolicySet.of([policy], policy_set.content_hash)
        whole = policy_set if len(policy_set.policies) > 1 else None
        results.extend(run_case(alone, policy, case, whole) for case in policy.tests)
    return results
