"""What ``postwarden-policy check`` and ``test`` report: text lines, or one JSON document.

The JSON documents (``--format json``) keep their field names from release to
release; ``version`` changes only when one is removed or changes meaning
(docs/policy-language.md shows both documents). Issues and warnings are
``{"file", "line", "column", "message"}``, line and column null when unknown.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import PolicyIssue
from .policyset import PolicySet
from .policytests import CaseResult, Failure
from .render import escaped
from .verdicts import Verdict

FORMAT_VERSION = 1
NO_TESTS = "no tests ran: no policy loaded has a tests: section"


@dataclass(frozen=True, slots=True)
class Loaded:
    """What loading the named paths gave: the set, or the issues that refused it."""

    policy_set: PolicySet | None
    errors: Sequence[PolicyIssue] = ()
    warnings: Sequence[PolicyIssue] = ()
    # The warnings that fail the run (--strict, --error-on), among ``warnings``.
    fatal: Sequence[PolicyIssue] = ()

    @property
    def ok(self) -> bool:
        """Whether the set loaded with no warning failing it."""
        return self.policy_set is not None and not self.fatal

    def failing(self, strict: bool, error_on: Collection[str]) -> Loaded:
        """These with the warnings that fail the run: every one (--strict), or those of
        the codes in ``error_on`` (--error-on)."""
        return replace(self, fatal=[w for w in self.warnings if strict or w.code in error_on])


def case_failed(result: CaseResult, *, whole_set: bool) -> bool:
    """Whether the case fails: ``whole_set`` (--whole-set) counts what the set breaks,
    its action among them."""
    return not result.passed or (whole_set and result.whole_set is not None)


def issue_lines(loaded: Loaded) -> Iterator[str]:
    """Warnings, then the issues; for stderr, where editors and CI annotations read them."""
    for warning in loaded.warnings:  # at its line when it has one (eval: a test's rule)
        kind = "fatal warning" if warning in loaded.fatal else "warning"
        code = f" [{warning.code}]" if warning.code else ""
        yield str(replace(warning, message=f"{kind}: {warning.message}{code}"))
    yield from map(str, loaded.errors)


def case_warning_lines(results: Sequence[CaseResult]) -> Iterator[str]:
    """What the engine warned of evaluating each case, at the case, as issues are told."""
    for result in results:
        line, column = result.case.where
        for warning in result.warnings:
            yield (f"{escaped(result.policy.source)}:{line}:{column}: test {result.case.name!r}: "
                   f"warning: {warning}")


def fatal_line(loaded: Loaded) -> str:
    """Why a run that loaded failed on its warnings (--strict, --error-on)."""
    return f"failed: {len(loaded.fatal)} warning(s) are errors here (--strict, --error-on)"


def check_line(policy_set: PolicySet) -> str:
    policies = policy_set.policies
    rules = sum(len(p.rules) for p in policies)
    return f"ok: {len(policies)} policies, {rules} rules ({policy_set.content_hash[:12]})"


def _rules(verdict: Verdict) -> str:
    return ", ".join(verdict.rules) or "(none)"


def case_lines(results: Sequence[CaseResult], *, whole_set: bool) -> Iterator[str]:
    for result in results:
        rules = _rules(result.verdict) if result.verdict else "-"
        failed = case_failed(result, whole_set=whole_set)
        at = result.case.where[0]  # file:line: where an editor or a CI annotation goes
        # A name is any text, and so is a file's: a line break in it would split the line
        # (or forge another case's), an escape sequence would reach the terminal.
        yield (f"{'FAIL' if failed else 'PASS'} {escaped(result.policy.source)}:{at}: "
               f"{escaped(result.case.name)} [rules: {rules}]")
        yield from (f"    {problem}" for problem in result.problems)
        if failed and result.verdict and result.verdict.flags:
            # What the parser made of the message: often why no rule matched.
            yield f"    message flags: {', '.join(sorted(result.verdict.flags))}"
        yield from _whole_set_lines(result, failing=whole_set)
    differing = sum(r.other_action for r in results)
    if differing and not whole_set:
        yield (f"{differing} case(s) get another action from the whole set "
               "(--whole-set makes that a failure)")
    if not results:  # a run that tested nothing is no pass (exit 5)
        yield NO_TESTS
        return
    failed_count = sum(case_failed(r, whole_set=whole_set) for r in results)
    yield f"{len(results) - failed_count} passed, {failed_count} failed"


def _whole_set_lines(result: CaseResult, *, failing: bool) -> Iterator[str]:
    """The whole set's verdict and what it breaks; without ``failing`` (--whole-set) only
    another action, as a notice."""
    whole, alone = result.whole_set, result.verdict
    if whole is None or alone is None or not (failing or result.other_action):
        return
    differs = f" where this policy alone gives {alone.action}" if result.other_action else ""
    yield f"    whole set: {whole.action} [rules: {_rules(whole)}]{differs}"
    if failing:
        yield from (f"    whole set: {problem}" for problem in result.whole_set_problems)


def issue_json(issue: PolicyIssue) -> dict[str, Any]:
    return {"file": issue.file, "line": issue.line, "column": issue.column,
            "message": issue.message}


def _warning_json(warning: PolicyIssue, loaded: Loaded) -> dict[str, Any]:
    return {**issue_json(warning), "code": warning.code or None,
            "fatal": warning in loaded.fatal}


def _loaded_json(loaded: Loaded) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "errors": [issue_json(i) for i in loaded.errors],
        "warnings": [_warning_json(w, loaded) for w in loaded.warnings],
    }


def check_document(loaded: Loaded) -> dict[str, Any]:
    policy_set = loaded.policy_set
    policies = policy_set.policies if policy_set else None
    return {
        **_loaded_json(loaded),
        "ok": loaded.ok,
        "policies": None if policies is None else len(policies),
        "rules": None if policies is None else sum(len(p.rules) for p in policies),
        "policy_hash": policy_set.content_hash if policy_set else None,
    }


def _failures_json(failures: Sequence[Failure]) -> list[dict[str, str]]:
    return [{"expectation": f.expectation, "message": f.message} for f in failures]


def _verdict_json(verdict: Verdict | None) -> dict[str, Any]:
    return {
        "action": verdict.action.value if verdict else None,
        "rules": list(verdict.rules) if verdict else None,
        "flags": sorted(verdict.flags) if verdict else None,
        "notify": list(verdict.notify) if verdict else None,
    }


def case_json(result: CaseResult, *, whole_set: bool) -> dict[str, Any]:
    whole = None
    if result.whole_set is not None:
        # The text shows another action on the verdict's line; here it is a failure too.
        action = [Failure("expect", f"expected {result.case.expect}, got "
                                    f"{result.whole_set.action}")] if result.other_action else []
        whole = {**_verdict_json(result.whole_set), "other_action": result.other_action,
                 "failures": _failures_json([*action, *result.whole_set_problems])}
    return {
        "file": result.policy.source,
        "line": result.case.where[0],
        "name": result.case.name,
        "policy": result.policy.name,
        "passed": not case_failed(result, whole_set=whole_set),
        **_verdict_json(result.verdict),
        "failures": _failures_json(result.problems),
        "whole_set": whole,
    }


def results_document(
    loaded: Loaded, results: Sequence[CaseResult], *, whole_set: bool
) -> dict[str, Any]:
    failed = sum(case_failed(r, whole_set=whole_set) for r in results)
    return {
        **_loaded_json(loaded),
        "ok": loaded.ok and bool(results) and not failed,
        "cases": [case_json(r, whole_set=whole_set) for r in results],
        "passed": len(results) - failed,
        "failed": failed,
    }
