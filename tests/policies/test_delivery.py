"""apply_edits: the delivered message, with libmilter's header semantics."""

from __future__ import annotations

import pytest

from postwarden_policies import (
    Accept,
    AddHeader,
    ChangeHeader,
    DeleteRecipient,
    Edit,
    RemoveHeader,
    ReplaceBody,
    Verdict,
    apply_edits,
)

RAW = b"From: a@b.test\r\nSubject: one\r\n two\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody\r\n"

CASES = [
    pytest.param((), RAW, id="no-edits"),
    pytest.param(
        (AddHeader("X-New", "v"),),
        b"From: a@b.test\r\nSubject: one\r\n two\r\nX-A: 1\r\nx-a: 2\r\nX-New: v\r\n\r\nbody\r\n",
        id="add-appends",
    ),
    pytest.param(
        (RemoveHeader("x-A"),),
        b"From: a@b.test\r\nSubject: one\r\n two\r\n\r\nbody\r\n",
        id="remove-all-occurrences",
    ),
    pytest.param(
        (ChangeHeader("Subject", 1, "[X] one two"),),
        b"From: a@b.test\r\nSubject: [X] one two\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody\r\n",
        id="change-folded",
    ),
    pytest.param(
        (ChangeHeader("X-A", 2, "b"),),
        b"From: a@b.test\r\nSubject: one\r\n two\r\nX-A: 1\r\nX-A: b\r\n\r\nbody\r\n",
        id="change-second",
    ),
    pytest.param(
        (ChangeHeader("X-A", 1, ""),),
        b"From: a@b.test\r\nSubject: one\r\n two\r\nx-a: 2\r\n\r\nbody\r\n",
        id="change-empty-deletes",
    ),
    pytest.param(
        (ChangeHeader("X-B", 1, "new"),),
        b"From: a@b.test\r\nSubject: one\r\n two\r\nX-A: 1\r\nx-a: 2\r\nX-B: new\r\n\r\nbody\r\n",
        id="change-missing-appends",
    ),
    pytest.param(
        (ReplaceBody(b"new\r\nbody\r\n"), DeleteRecipient("r@x.test")),
        b"From: a@b.test\r\nSubject: one\r\n two\r\nX-A: 1\r\nx-a: 2\r\n\r\nnew\r\nbody\r\n",
        id="replace-body",
    ),
]


@pytest.mark.parametrize(("edits", "expected"), CASES)
def test_apply_edits(edits: tuple[Edit, ...], expected: bytes) -> None:
    assert apply_edits(RAW, Verdict(Accept(), edits=edits)) == expected


def test_lf_messages_keep_lf() -> None:
    raw = b"Subject: s\n\nbody\n"
    verdict = Verdict(Accept(), edits=(AddHeader("X-A", "1"), ReplaceBody(b"b2\r\n")))
    assert apply_edits(raw, verdict) == b"Subject: s\nX-A: 1\n\nb2\n"


def test_headers_only_message_gets_a_separator() -> None:
    verdict = Verdict(Accept(), edits=(AddHeader("X-A", "1"),))
    assert apply_edits(b"Subject: s", verdict) == b"Subject: s\nX-A: 1\n\n"


def test_the_header_section_ends_where_the_parser_and_postfix_end_it() -> None:
    """Mixed line ends: the blank line is a CRLF after LF-ended fields. The body used to
    be looked for after an LF blank line only, and the whole message read as headers."""
    raw = b"From: a@b.test\nSubject: s\r\n\r\n<script>x</script>\r\n"
    verdict = Verdict(Accept(), edits=(AddHeader("X-A", "1"), ReplaceBody(b"clean\r\n")))
    assert apply_edits(raw, verdict) == b"From: a@b.test\nSubject: s\r\nX-A: 1\n\nclean\n"


def test_a_line_that_is_no_field_starts_the_body() -> None:
    verdict = Verdict(Accept(), edits=(ReplaceBody(b"clean\r\n"),))
    assert apply_edits(b"Subject: s\r\nnot a field\r\n", verdict) == b"Subject: s\r\n\r\nclean\r\n"


def test_a_field_ending_in_a_bare_cr_keeps_the_blank_line() -> None:
    verdict = Verdict(Accept(), edits=(ReplaceBody(b"Note: clean\r\n"),))
    delivered = apply_edits(b"From: a\nSubject: s\r", verdict)
    assert delivered == b"From: a\nSubject: s\r\n\nNote: clean\n"


def test_a_field_after_a_lone_cr_is_text_of_the_one_before() -> None:
    """As to Postfix, whose lines end at LF: the Subject prefix's change (its first Subject
    index) went on the hidden Subject, where Postfix changes the one after it."""
    raw = b"X-A: a\rSubject: hidden\r\nSubject: real\r\n\r\nbody\r\n"
    verdict = Verdict(Accept(), edits=(ChangeHeader("Subject", 1, "[EXT] real"),))
    assert apply_edits(raw, verdict) == (
        b"X-A: a\rSubject: hidden\r\nSubject: [EXT] real\r\n\r\nbody\r\n")
