"""A Subject or header folded with CRLF TAB, as Exchange folds, unfolds to a tab that
readers show as a space: rules read it so too, and as written."""

from __future__ import annotations

import pytest

from postwarden_policies import Envelope, evaluate_message

from .policy_helpers import rule_policy

HEAD = b"From: a@elsewhere.test\r\nTo: b@example.com\r\n"


def _matches(when: str, headers: bytes) -> bool:
    raw = HEAD + headers + b"\r\nbody\r\n"
    return evaluate_message(rule_policy(when, "reject"), raw, Envelope()).rules == ("r",)


@pytest.mark.parametrize("when", [
    "subject: 'free money'",
    "subject: '(?i)^free money$'",
    "header: {X-Offer: 'free money'}",
])
@pytest.mark.parametrize("folded", [b"free\r\n\tmoney", b"free \r\n\t money", b"free\tmoney"])
def test_a_folded_tab_reads_as_the_space_readers_show(when: str, folded: bytes) -> None:
    """It read "free\\tmoney", which 'free money' missed."""
    assert _matches(when, b"Subject: " + folded + b"\r\nX-Offer: " + folded + b"\r\n")


def test_the_value_as_written_still_holds_its_tab() -> None:
    assert _matches(r"subject: 'free\tmoney'", b"Subject: free\r\n\tmoney\r\n")


def test_a_folded_tab_reads_as_a_space_not_as_nothing() -> None:
    assert not _matches("subject: 'freemoney'", b"Subject: free\r\n\tmoney\r\n")
