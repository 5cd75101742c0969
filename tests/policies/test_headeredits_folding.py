"""The Subject prefix keeps the folding the Subject came with (its line breaks as the
message's own); where the raw header section does not give the parsed value back, the
unfolded value is what it goes on."""

from __future__ import annotations

import pytest

from postwarden_policies import AddHeader, ChangeHeader, Envelope, evaluate, parse_message

from .policy_helpers import policy

TAG = policy("tag_flags: false\nrules:\n  - name: tag\n    then: {subject_prefix: '[EXT] '}\n")


def _subject_edit(head: bytes) -> object:
    facts = parse_message(head + b"\r\nbody\r\n", Envelope())
    (edit,) = evaluate(TAG, facts).edits
    return edit


@pytest.mark.parametrize(("head", "value"), [
    pytest.param(b"Subject: one\r\n two\r\n\tthree\r\n", "[EXT] one\r\n two\r\n\tthree",
                 id="folded"),
    pytest.param(b"From: a@b.test\r\nSubject: one\r\n two\r\nTo: c@d.test\r\n",
                 "[EXT] one\r\n two", id="among-others"),
    pytest.param(b"Subject:\r\n  one\r\n two\r\n", "[EXT] one\r\n two",
                 id="empty-first-line-folds-nothing"),
    pytest.param(b"Subject: one\r\n \r\n two\r\n", "[EXT] one \r\n two",
                 id="a-line-of-blanks-folds-nothing"),
    pytest.param(b"Subject: one \r\n  \r\n", "[EXT] one", id="trailing-blank-lines"),
    # Raw 8-bit words in encoded words (test_raw_subject_words.py), a fold between inside.
    pytest.param(b"Subject: f\xe4llig\r\n n\xe4chste\r\n",
                 "[EXT] =?UTF-8?Q?f=C3=A4llig_n=C3=A4chste?=", id="raw-8-bit-encoded"),
    pytest.param(b"subject : one\r\n two\r\n", "[EXT] one\r\n two", id="name-spelt-otherwise"),
    # The parsed value strips a leading vertical tab; the raw lines do not give it back.
    pytest.param(b"Subject: \x0bone\r\n two\r\n", "[EXT] one two", id="unfolded-otherwise"),
    pytest.param(b"Subject: one\r\n two\r\nSubject: other\r\n three\r\n", "[EXT] one\r\n two",
                 id="the-first-of-two"),
])
def test_the_prefixed_subject_keeps_its_folding(head: bytes, value: str) -> None:
    assert _subject_edit(head) == ChangeHeader("Subject", 1, value)


def test_a_message_with_bare_lf_keeps_its_own_line_breaks() -> None:
    facts = parse_message(b"Subject: one\n two\n\nbody\n", Envelope())
    assert evaluate(TAG, facts).edits == (ChangeHeader("Subject", 1, "[EXT] one\n two"),)


def test_an_unfolded_subject_stays_one_line() -> None:
    assert _subject_edit(b"Subject: " + b"x " * 600 + b"\r\n") == ChangeHeader(
        "Subject", 1, "[EXT] " + "x " * 599 + "x")


@pytest.mark.parametrize(("head", "edit"), [
    pytest.param(b"X-A: a\rSubject: hidden\r\nSubject: real\r\n two\r\n",
                 ChangeHeader("Subject", 1, "[EXT] real\r\n two"), id="before-the-real-one"),
    pytest.param(b"Subject: real\r\nX-A: a\rSubject: hidden\r\n", ChangeHeader(
        "Subject", 1, "[EXT] real"), id="after-the-real-one"),
    pytest.param(b"X-A: a\rSubject: hidden\r\n", AddHeader("Subject", "[EXT]"), id="alone"),
])
def test_a_subject_after_a_lone_cr_is_not_the_one_postfix_changes(head: bytes,
                                                                  edit: object) -> None:
    """To Postfix (cleanup_replace_stray_cr_lf = no, or one without it) the field after a
    lone CR is text of the one before, and its first Subject index the next Subject: that
    one's text was replaced by the hidden one's, prefixed."""
    assert _subject_edit(head) == edit
