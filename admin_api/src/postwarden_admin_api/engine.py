"""The admin service's door to the policy compiler: compile, check, run off the loop.

Uploaded documents are checked exactly as the milter loads them, and engine
issues become 422 ``validation_failed`` details with file, line and column.

Compiling and evaluating cost CPU seconds on large input (a 10 MB message, a
policy of many patterns): request handlers run them with :func:`off_loop`, so
the event loop keeps answering every other request meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from postwarden_policies import (
    PolicyIssue,
    PolicyLoadError,
    PolicySet,
    load_policy_set_from_sources,
)
from postwarden_policies.errors import (
    ASCII_ONLY_CLASS,
    BLOCK_LINE_END,
    BRACKETED_WORD,
    CASE_FOLDING,
    COMMENT_AFTER_VALUE,
    LIST_IN_GLOB,
    MALFORMED_UNSANITIZED,
    MATCHES_EVERY_TEXT,
    PAST_PARSER_CAP,
    REGEX_IN_GLOB,
    SINGLE_LABEL_DOMAIN,
    SUBDIRECTORY_NOT_LOADED,
    TEST_EXPECTATION_UNMET,
    TEST_SAMPLE_MISREAD,
    UNREACHABLE_RULE,
)
from postwarden_policies.loader import not_utf8

from .errors import ValidationFailed

log = logging.getLogger(__name__)
TEST_WARNING = "test_expect_rules_invalid"  # a policy test's mistake (loader_warnings)
# Every code loader_warnings gives, with what it means (the OpenAPI document lists them):
# what the policy loader itself says of a file, which check (and policy push, which
# checks first) prints already.
LOADER_WARNINGS: Mapping[str, str] = {
    TEST_WARNING: "a policy test's expect_rules naming no verdict of the policy (an unknown "
                  "rule, a misspelt limit, a misplaced report: prefix), which the milter only "
                  "logs",
    COMMENT_AFTER_VALUE: "a plain value followed by a comment starting right after it "
                         "(message: Ticket #12 is 'Ticket')",
    ASCII_ONLY_CLASS: "a pattern whose \\w or \\b (ASCII-only in RE2) likely misses words "
                      "outside ASCII",
    CASE_FOLDING: "a case-insensitive pattern or glob holding a letter whose case folds to "
                  "two (ß to ss), which RE2 matches with neither",
    MATCHES_EVERY_TEXT: "a pattern with an empty alternative (viagra|cialis|), which matches "
                        "every value",
    BRACKETED_WORD: "a pattern with a word in brackets ([SPAM]), a class that matches one "
                    "of its letters, not the tag",
    REGEX_IN_GLOB: "a glob written as a regular expression (.*\\.exe)",
    LIST_IN_GLOB: "globs written as one text (*.exe, *.scr), which match only a name "
                  "holding the comma",
    SINGLE_LABEL_DOMAIN: "a domain of one label (sender_domain: partners), as a list's name "
                         "reads, which no mail domain is",
    UNREACHABLE_RULE: "a terminal rule without conditions (no when:) that other rules "
                      "follow, which no message then reaches",
    SUBDIRECTORY_NOT_LOADED: "policy files in a subdirectory of a policy directory, which is "
                             "read without its subdirectories (policy push, check)",
    PAST_PARSER_CAP: "a max_mime_parts or max_mime_depth past what the parser reads, which "
                     "acts as that",
    BLOCK_LINE_END: "a pattern or glob written as a block (|) that ends with its line break, "
                    "which a match then needs",
    TEST_SAMPLE_MISREAD: "a policy test's raw: message written on one line with \\n that "
                         "YAML does not read as line breaks (single quotes), folded (raw: >, "
                         "its lines joined), or starting with a byte order mark, which check "
                         "and test refuse",
    TEST_EXPECTATION_UNMET: "a policy test's expectation no verdict can meet (headers of a "
                            "message it expects refused, a header both expected and "
                            "expected absent), which check and test refuse",
    MALFORMED_UNSANITIZED: "HTML sanitized and no rule holding malformed mail, which is "
                           "never sanitized",
}
P = ParamSpec("P")
T = TypeVar("T")
# Few threads on purpose: a burst of heavy requests queues here instead of
# taking every core (and the loop's default executor) from the service.
ENGINE_THREADS = 2
_ENGINE = ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="policy-engine")


async def off_loop(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``work(*args, **kwargs)`` in an engine thread; its exceptions propagate unchanged."""
    call = functools.partial(work, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_ENGINE, call)


def issue_details(issues: Sequence[PolicyIssue]) -> list[dict[str, Any]]:
    return [
        {"file": i.file, "line": i.line, "column": i.column, "message": i.message}
        for i in issues
    ]


def not_utf8_detail(field: str, data: bytes, exc: UnicodeDecodeError) -> dict[str, Any]:
    """A policy sent in another encoding (a file kept in Latin-1) as a 422's detail: the
    field, and where its first byte that is not UTF-8 is, as ``check`` places it."""
    [detail] = issue_details([not_utf8("upload", data, exc)])
    return {"field": field, **detail}


def loader_warnings(issues: Sequence[PolicyIssue]) -> list[dict[str, Any]]:
    """The API's warnings for the loader's, which the milter loads the policy with, and
    only logs: a policy test's mistake (expect_rules naming a rule the policy does not
    define, a misspelt limit, a misplaced ``report:``) unless the issue names its kind
    (a value a comment cut short)."""
    return [{"code": issue.code or TEST_WARNING, **detail}
            for issue, detail in zip(issues, issue_details(issues), strict=True)]


def compile_sources(sources: Sequence[tuple[str, str]],
                    warnings: list[PolicyIssue] | None = None) -> PolicySet:
    """The compiled policy set, or 422 listing every issue of every source. Its warnings
    are logged, as the milter logs them, and added to ``warnings`` when given."""

    def warn(issue: PolicyIssue) -> None:
        log.warning("%s", issue)
        if warnings is not None:
            warnings.append(issue)

    try:
        return load_policy_set_from_sources(list(sources), warn=warn)
    except PolicyLoadError as exc:
        raise ValidationFailed(issue_details(exc.issues), "policy did not load") from None


def compile_upload(source: str, warnings: list[PolicyIssue]) -> tuple[PolicySet, str]:
    """An uploaded document compiled on its own, and its policy's name as the engine read
    it (another YAML parser could read ``name: 2024_01`` differently), or 422; its
    warnings added to ``warnings``."""
    policy_set = compile_sources([("upload", source)], warnings)
    (policy,) = policy_set.policies  # one source that loads is one policy
    return policy_set, policy.name
