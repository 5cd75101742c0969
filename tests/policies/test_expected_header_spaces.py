"""`expect_headers` compares a value as the delivered message carries it: its field
body after the colon, unfolded (a fold's line break removed, the blank starting its
next line kept, as RFC 5322 unfolds), without the one blank after the colon that
separates name and value (postwarden writes ``Name: value``, as Postfix does), and
nothing else trimmed: a leading or trailing blank of a value is delivered, and what
reads the field (a Sieve or procmail rule matching its whole value) sees it."""

from __future__ import annotations

import pytest

from postwarden_policies import run_policy_tests
from postwarden_policies.loader import load_policy_set_from_sources

from .policy_helpers import said


def outcome(then: str, raw: str, expected: str) -> tuple[bool, tuple[str, ...]]:
    text = (f"version: 1\nname: p\nrules:\n  - name: tag\n    then: {then}\n"
            f"tests:\n  - name: c\n    raw: \"{raw}\"\n    recipients: [c@d.test]\n"
            f"    expect: accept\n    expect_headers: {expected}\n")
    (result,) = run_policy_tests(load_policy_set_from_sources([("p", text)]))
    return result.passed, said(result.problems)


PLAIN = "From: a@b.test\\nSubject: hi\\n\\nhello\\n"


@pytest.mark.parametrize(("added", "expected", "problem"), [
    ("'yes '", "'yes'", "expected header X-Tag: 'yes', got ['yes ']"),
    ("'  yes'", "'yes'", "expected header X-Tag: 'yes', got ['  yes']"),
    ("'yes '", "'yes '", None),
    ("'  yes'", "'  yes'", None),
    ("yes", "'yes '", "expected header X-Tag: 'yes ', got ['yes']"),
])
def test_an_added_value_is_compared_with_its_blanks(added: str, expected: str,
                                                   problem: str | None) -> None:
    """A rule adding "yes " (a stray blank) passed a case expecting "yes", and a case
    expecting the blank it adds failed, saying it got "yes"."""
    then = f"{{add_header: {{X-Tag: {added}}}}}"
    assert outcome(then, PLAIN, f"{{X-Tag: {expected}}}") == (
        problem is None, () if problem is None else (problem,))


@pytest.mark.parametrize(("field", "expected"), [
    ("X-Old: a\\n b", "a b"),  # unfolded: the blank that starts the next line is kept
    ("X-Old: a\\n\\tb", "a\\tb"),
    ("X-Old:\\n a", "a"),  # the blank after the colon, on the next line
    ("X-Old:a", "a"),  # no blank after the colon: nothing to take off
    ("X-Old:  a", " a"),  # one blank separates, the other is the value's
    ("X-Old: =?utf-8?q?_a_?=", " a "),  # decoded, blanks and all
])
def test_a_received_value_is_read_as_delivered(field: str, expected: str) -> None:
    raw = f"From: a@b.test\\n{field}\\n\\nhello\\n"
    assert outcome("{add_header: {X-Tag: '1'}}", raw, f'{{X-Old: "{expected}"}}') == (True, ())
