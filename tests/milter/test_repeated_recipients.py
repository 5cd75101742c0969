"""max_recipients counts recipients, not RCPT TO commands: one Postfix's cleanup drops as
a repeat (its duplicate filter) is no further recipient. The pairs below are what the real
Postfix 3.7 delivered once (same) or twice (distinct), with smtputf8_enable (its default:
Unicode case folding); tests/e2e/test_apply_recipients.py checks some of them through it."""

from __future__ import annotations

import io

import Milter
import pytest

from postwarden_milter.session import Transaction
from postwarden_policies import load_policy_set_from_sources
from tests.milter.conftest import POLICY, Harness

from .test_callbacks import CLEAN

Given = tuple[str, tuple[str, ...]]  # RCPT TO address and its ESMTP parameters

# Unicode case folding: Postfix's with smtputf8_enable, which SMTPUTF8 in MAIL FROM tells.
UNICODE_CASE: list[tuple[Given, Given]] = [
    (("<\u00c9@x.test>", ()), ("<\u00e9@x.test>", ())),
    (("<stra\u00dfe@x.test>", ()), ("<STRASSE@x.test>", ())),
    (("<kate@x.test>", ()), ("<\u212aate@x.test>", ())),
]
SAME: list[tuple[Given, Given]] = [
    (("<a@x.test>", ()), ("<a@x.test>", ())),
    (("<A@x.test>", ()), ("<a@x.test>", ())),
    (("<a@x.test>", ()), ("<a@X.TEST>", ())),
    (("<a@x.test>", ("NOTIFY=SUCCESS,FAILURE",)), ("<a@x.test>", ("notify=failure,success",))),
    (("<a@x.test>", ("ORCPT=rfc822;a@x.test",)), ("<a@x.test>", ())),
    (("<a@x.test>", ("ORCPT=rfc822;a@x.test",)), ("<a@x.test>", ("ORCPT=RFC822;A@x.test",))),
    (("<a@x.test>", ("ORCPT=rfc822;a+2Bb@x.test",)),
     ("<a@x.test>", ("ORCPT=rfc822;a+2bb@x.test",))),
    *UNICODE_CASE,
]
DISTINCT: list[tuple[Given, Given]] = [
    (("<a@x.test>", ()), ("<b@x.test>", ())),
    (('<"bob"@x.test>', ()), ("<bob@x.test>", ())),
    (("< a@x.test>", ()), ("<a@x.test>", ())),
    (("<a@x.test>", ("NOTIFY=NEVER",)), ("<a@x.test>", ())),
    (("<a@x.test>", ("ORCPT=rfc822;z@x.test",)), ("<a@x.test>", ())),
]


def _transaction(smtputf8: bool = True) -> Transaction:
    return Transaction(sender="s@x.test", auth_user=None, memory_threshold=1024, max_bytes=None,
                       smtputf8=smtputf8)


@pytest.mark.parametrize(("first", "again"), SAME)
def test_a_recipient_postfix_drops_as_a_repeat_is_none_past_the_limit(
    first: Given, again: Given,
) -> None:
    txn = _transaction()
    assert txn.add_recipient(*first, limit=1)
    assert txn.add_recipient(*again, limit=1)
    assert txn.recipients == [first[0].strip("<>")]  # the first spelling, as Postfix keeps


@pytest.mark.parametrize(("first", "other"), UNICODE_CASE)
def test_without_smtputf8_unicode_case_spellings_count_twice(first: Given, other: Given) -> None:
    # Postfix takes SMTPUTF8 only with smtputf8_enable; without it, it may keep both.
    txn = _transaction(smtputf8=False)
    assert txn.add_recipient(*first, limit=1)
    assert not txn.add_recipient(*other, limit=1)


@pytest.mark.parametrize(("first", "other"), DISTINCT)
def test_a_recipient_postfix_keeps_beside_the_other_counts(first: Given, other: Given) -> None:
    txn = _transaction()
    assert txn.add_recipient(*first, limit=1)
    assert not txn.add_recipient(*other, limit=1)
    assert txn.recipients == [first[0].strip("<>")]


def test_repeated_rcpt_to_is_not_refused_before_the_limit(harness: Harness) -> None:
    ctx = harness.connect()  # max_recipients: 3
    given = ("bob@example.net", "Bob@example.net", "bob@example.net", "carol@example.net",
             "dave@example.net")
    assert ctx.send(CLEAN, recipients=given) == Milter.CONTINUE
    assert ctx._reply is None  # no 452
    [event] = harness.audit.events
    assert event.recipients == ("bob@example.net", "carol@example.net", "dave@example.net")


def test_past_the_limit_of_distinct_recipients_452_still(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    for rcpt in ("bob", "BOB", "carol", "bob", "dave"):
        assert ctx._envrcpt(f"<{rcpt}@example.net>") == Milter.CONTINUE
    assert ctx._envrcpt("<erin@example.net>") == Milter.TEMPFAIL
    assert ctx._reply == ("452", "4.5.3", "Too many recipients")
    assert ctx._envrcpt("<Carol@example.net>") == Milter.CONTINUE  # a repeat adds none
    ctx._abort()


def test_a_limit_lowered_after_rcpt_deletes_only_distinct_recipients_past_it(
    harness: Harness,
) -> None:
    ctx = harness.connect()
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    for rcpt in ("bob", "carol", "Bob", "bob", "dave", "carol"):
        assert ctx._envrcpt(f"<{rcpt}@example.net>") == Milter.CONTINUE
    lowered = POLICY.replace("max_recipients: 3", "max_recipients: 2")
    harness.services.policies.swap(load_policy_set_from_sources([("test.yaml", lowered)]))
    assert ctx._header("Subject", " hi") in (Milter.CONTINUE, Milter.NOREPLY)
    assert ctx._eoh() in (Milter.CONTINUE, Milter.NOREPLY)
    assert ctx._feed_body(io.BytesIO(b"hello\r\n")) == Milter.CONTINUE
    assert ctx._eom() == Milter.CONTINUE
    # Postfix holds bob, carol, dave (the repeats dropped): only dave is past the limit.
    assert ctx._delrcpt == ["<dave@example.net>"]
    assert harness.audit.events[-1].recipients == (
        "bob@example.net", "carol@example.net", "dave@example.net")


@pytest.mark.parametrize(("macro", "folded"), [
    ("yes", True), ("YES", True), ("no", False), (None, False),
])
@pytest.mark.parametrize("local", [True, False], ids=["sendmail", "smtp"])
def test_without_smtputf8_the_macro_says_how_postfix_folds_case(
    harness: Harness, macro: str | None, folded: bool, local: bool,
) -> None:
    """cleanup's MAIL FROM for a sendmail(1) submission never says SMTPUTF8 (nor need an
    SMTP client's, without strict_smtputf8), yet Postfix with smtputf8_enable keeps one of
    JÖRG@ and jörg@: {smtputf8_enable} (contrib/postfix/main.cf.snippet) tells the milter.
    Without it, both count, and a sendmail submission past the limit is refused whole."""
    ctx = harness.connect()  # max_recipients: 3
    ctx._priv._handler._client.local = local  # TestCtx cannot say port 0
    if macro is not None:
        ctx._setsymval("{smtputf8_enable}", macro)
    given = ("j\u00f6rg@example.net", "J\u00d6RG@example.net", "bob@example.net",
             "carol@example.net")
    answer = ctx.send(CLEAN, recipients=given)
    [event] = harness.audit.events
    if folded:
        assert (answer, event.action) == (Milter.CONTINUE, "accept")
        assert event.recipients == given[:1] + given[2:]
    elif local:
        assert (answer, event.action, event.smtp_reply) == (
            Milter.REJECT, "reject", "550 5.5.3 Too many recipients")
        assert event.recipients == given
    else:  # the 452 refuses carol alone
        assert (answer, event.action) == (Milter.CONTINUE, "accept")
        assert event.recipients == given[:3]
