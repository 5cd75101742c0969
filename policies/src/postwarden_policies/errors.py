"""Exceptions of postwarden_policies.

    PoliciesError
    └── PolicyLoadError     policy sources that do not load; carries every PolicyIssue found

Evaluation never raises: a message that cannot be parsed or rewritten becomes
a flag or a decision in the Verdict, never an exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .render import escaped

# The kind of a warning that is not a policy test's mistake, for the admin API's answers.
COMMENT_AFTER_VALUE = "value_cut_by_comment"
ASCII_ONLY_CLASS = "ascii_only_class"  # \w or \b where words outside ASCII are meant
BLOCK_LINE_END = "block_line_end"  # a pattern or glob written as a block, with its line break
CASE_FOLDING = "case_folding"  # a caseless ß, which RE2 does not match with SS
MATCHES_EVERY_TEXT = "matches_every_text"  # a pattern with an empty alternative (a|b|)
BRACKETED_WORD = "bracketed_word"  # a pattern's [SPAM], a class of one of its letters
MALFORMED_UNSANITIZED = "malformed_unsanitized"  # HTML sanitized, malformed mail not held
PAST_PARSER_CAP = "past_parser_cap"  # max_mime_parts past the parts the parser reads
REGEX_IN_GLOB = "regex_in_glob"  # a glob written as a regular expression (.*\.exe)
LIST_IN_GLOB = "list_in_glob"  # globs written as one text ("*.exe, *.scr")
SINGLE_LABEL_DOMAIN = "single_label_domain"  # sender_domain: partners, a list's name
UNREACHABLE_RULE = "unreachable_rule"  # rules after a terminal rule without conditions
SUBDIRECTORY_NOT_LOADED = "subdirectory_not_loaded"  # policy files below a directory named
# A policy test's inline sample the parser would misread (raw: one line of literal \n,
# folded (>), or starting with a byte order mark):
# `check` and `test` refuse it, a milter and an upload warn.
TEST_SAMPLE_MISREAD = "test_sample_misread"
# A policy test's expectation no verdict can meet (headers of a message refused, one both
# expected and expected absent): `check` and `test` refuse it, a milter and an upload warn.
TEST_EXPECTATION_UNMET = "test_expectation_unmet"
# The codes of what `check` and `test` load with a warning (the two above they refuse):
# what `--error-on CODE` may name.
WARNING_CODES = (COMMENT_AFTER_VALUE, ASCII_ONLY_CLASS, BLOCK_LINE_END, CASE_FOLDING,
                 MATCHES_EVERY_TEXT, BRACKETED_WORD, MALFORMED_UNSANITIZED, PAST_PARSER_CAP,
                 REGEX_IN_GLOB, LIST_IN_GLOB, SINGLE_LABEL_DOMAIN, UNREACHABLE_RULE,
                 SUBDIRECTORY_NOT_LOADED)
SHOWN_CHARS = 80  # of a key or value an issue quotes


# How alike a name must be to one known to be told as meant for it: "rulez" for
# "rules" (0.8), not "header" for "sender" (0.67), a key a limits condition refuses.
LIKELY_MEANT = 0.8


def likely_meant(text: str, known: Iterable[str]) -> str:
    """" (did you mean 'subject'?)" for a misspelt or wrongly cased name among ``known``,
    else "": one of twenty or thirty names is hard to spot in the list of them all."""
    if len(text) > SHOWN_CHARS:
        return ""
    names = [str(name) for name in known]  # an enum's members as their values
    close = difflib.get_close_matches(text.lower(), names, n=1, cutoff=LIKELY_MEANT)
    # Two letters swapped in a short name ("wehn", "tehn") are 0.75 alike to difflib.
    close += [name for name in names if _swapped(text.lower(), name)][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _swapped(text: str, name: str) -> bool:
    """Whether ``name`` is ``text`` with two neighbouring characters swapped."""
    differ = [at for at, (a, b) in enumerate(zip(text, name, strict=False)) if a != b]
    return (len(text) == len(name) and len(differ) == 2 and differ[1] == differ[0] + 1
            and text[differ[0]] == name[differ[1]] and text[differ[1]] == name[differ[0]])


def shown(text: str) -> str:
    """``text`` quoted for an issue, cut with an ellipsis past :data:`SHOWN_CHARS`: a key
    or value megabytes long (an explicit ``?`` key, a generated file) made each issue
    about it as long, the rule name in every issue of its rule."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"


@dataclass(frozen=True, slots=True, order=True)
class PolicyIssue:
    """One problem in a policy source; line and column are 1-based, None when unknown.
    ``code`` names a warning's kind where it is no policy test's mistake."""

    file: str
    line: int | None
    column: int | None
    message: str
    code: str = field(default="", compare=False)

    def __str__(self) -> str:
        """``file:line:column: message`` on one line: a line break in a file's name (git
        takes one) would split it, or forge another file's line for an editor or CI."""
        if self.line is None:
            return escaped(f"{self.file}: {self.message}")
        return escaped(f"{self.file}:{self.line}:{self.column}: {self.message}")


class PoliciesError(Exception):
    """Base of every error raised by postwarden_policies."""


class PolicyLoadError(PoliciesError):
    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        self.issues = tuple(issues)
        count = len(self.issues)
        first = str(self.issues[0]) if self.issues else "no details"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"policy did not load: {first}{more}")

    def in_order(self) -> list[PolicyIssue]:
        """The issues by file, line and column: how ``check`` (and ``push``) print them."""
        return sorted(self.issues, key=lambda i: (i.file, i.line or 0, i.column or 0))
