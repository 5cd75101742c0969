"""`limits: when:` in the milter: a transaction's limits are worked out at MAIL FROM
from its envelope, and SIZE, the body as it streams, RCPT and the local-submission
check use them."""

from __future__ import annotations

import io

import Milter
import pytest

from postwarden_milter.reload import PolicyHolder
from postwarden_policies import load_policy_set_from_sources
from tests.milter.conftest import Ctx, Harness

INBOUND = "version: 1\nname: inbound\nlimits: {max_recipients: 5, max_message_bytes: 20000}\n"
SUBMISSION = """\
version: 1
name: submission
limits:
  when: {authenticated: true}
  max_recipients: 2
  max_message_bytes: 1000
  max_mime_parts: 3
"""
MESSAGE = b"From: alice@example.org\r\nSubject: s\r\nMessage-ID: <w1@example.org>\r\n\r\nHi.\r\n"
RECIPIENTS = tuple(f"r{n}@example.net" for n in range(4))


@pytest.fixture(autouse=True)
def scoped(harness: Harness) -> None:
    harness.use(policies=PolicyHolder(load_policy_set_from_sources(
        [("in.yaml", INBOUND), ("sub.yaml", SUBMISSION)])))


def signed_in(harness: Harness) -> Ctx:
    ctx = harness.connect()
    ctx._setsymval("{auth_authen}", "alice")
    return ctx


def test_452_at_rcpt_only_for_the_transaction_the_limits_apply_to(harness: Harness) -> None:
    ctx = signed_in(harness)
    assert ctx.send(MESSAGE, recipients=RECIPIENTS) == Milter.CONTINUE
    assert ctx._reply == ("452", "4.5.3", "Too many recipients")
    assert harness.audit.events[-1].recipients == RECIPIENTS[:2]

    anonymous = harness.connect()
    assert anonymous.send(MESSAGE, recipients=RECIPIENTS) == Milter.CONTINUE
    assert anonymous._reply is None
    assert harness.audit.events[-1].recipients == RECIPIENTS


def test_size_is_refused_at_mail_only_where_the_scoped_limit_applies(harness: Harness) -> None:
    ctx = signed_in(harness)
    assert ctx._envfrom("<alice@example.org>", "SIZE=5000") == Milter.REJECT
    assert ctx._reply[:2] == ("552", "5.3.4")
    assert harness.connect()._envfrom("<alice@example.org>", "SIZE=5000") == Milter.CONTINUE


def test_the_streamed_body_is_measured_against_the_transactions_limit(harness: Harness) -> None:
    big = MESSAGE + b"x" * 76 * 30 + b"\r\n"  # past 1000 bytes, within 20 000
    ctx = signed_in(harness)
    assert ctx.send(big) == Milter.REJECT
    assert ctx._reply == ("552", "5.3.4", "Message size exceeds fixed limit")
    # Refused by the milter as the body came (not kept): the row names the limit as the
    # engine's verdict would.
    assert harness.audit.events[-1].rules == ("limit:max_message_bytes",)
    assert harness.connect().send(big) == Milter.CONTINUE
    assert [e.action for e in harness.audit.events] == ["reject", "accept"]


def local(ctx: Ctx) -> Ctx:
    ctx._priv._handler._client.local = True  # sendmail(1): TestCtx cannot say port 0
    return ctx


def test_a_local_submission_is_refused_whole_past_its_own_limit(harness: Harness) -> None:
    ctx = local(signed_in(harness))
    assert ctx.send(MESSAGE, recipients=RECIPIENTS[:3]) == Milter.REJECT
    assert ctx._reply[:2] == ("550", "5.5.3")
    assert harness.audit.events[-1].rules == ("limit:max_recipients",)
    assert local(harness.connect()).send(MESSAGE, recipients=RECIPIENTS[:3]) == Milter.CONTINUE


WATCHED = """\
version: 1
name: watch
rules:
  - name: cron-mail
    when: {subject: "^s$"}
    then: {notify: [soc], add_header: {X-Watched: "yes"}}
"""
TRIAL = "version: 1\nname: trial\nmode: report\nrules:\n  - name: trial\n    then: reject\n"


def test_a_local_submission_refused_whole_names_the_rules_that_matched(
    harness: Harness,
) -> None:
    # Refused before its evaluation, its row named the limit alone: the rules' notify was
    # never raised, and a report-mode policy on trial never saw it.
    harness.use(policies=PolicyHolder(load_policy_set_from_sources(
        [("sub.yaml", SUBMISSION), ("watch.yaml", WATCHED), ("trial.yaml", TRIAL)])))
    ctx = local(signed_in(harness))
    assert ctx.send(MESSAGE, recipients=RECIPIENTS[:3]) == Milter.REJECT
    assert ctx._reply == ("550", "5.5.3", "Too many recipients")
    assert ctx.header_edits == []
    [event] = harness.audit.events
    assert (event.action, event.smtp_reply) == ("reject", "550 5.5.3 Too many recipients")
    assert event.rules == ("cron-mail", "limit:max_recipients", "report:trial")
    assert event.notify == ("soc",)
    assert event.changes == ()  # no recipient was deleted: none got it


PARTS = (
    b"From: alice@example.org\r\nMessage-ID: <w2@example.org>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    + b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % n for n in range(5))
    + b"--b--\r\n"
)


def test_the_message_is_parsed_with_the_transactions_structure_caps(harness: Harness) -> None:
    ctx = signed_in(harness)
    assert ctx.send(PARTS) == Milter.REJECT
    assert ctx._reply[:2] == ("554", "5.6.0")
    refused = harness.audit.events[-1]
    assert refused.rules == ("limit:max_mime_parts",)
    assert "too_many_parts" in refused.flags  # the parser stopped at the cap of 3
    assert harness.connect().send(PARTS) == Milter.CONTINUE


def test_a_size_refusal_after_a_reload_names_the_set_whose_limit_refused_it(
        harness: Harness) -> None:
    """A message keeps the size limit of its MAIL FROM's set; its row named the set a
    reload put in force meanwhile, whose limit would have let it through."""
    started_with = harness.services.policies.current.content_hash
    ctx = signed_in(harness)
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    harness.services.policies.swap(load_policy_set_from_sources(
        [("in.yaml", INBOUND), ("sub.yaml", SUBMISSION.replace("1000", "100000"))]))
    assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
    assert ctx._data() in (Milter.CONTINUE, Milter.NOREPLY)
    assert ctx._header("Subject", " s") in (Milter.CONTINUE, Milter.NOREPLY)
    assert ctx._eoh() in (Milter.CONTINUE, Milter.NOREPLY)
    ctx._feed_body(io.BytesIO(b"x" * 76 * 30 + b"\r\n"))  # past 1000 bytes
    assert ctx._eom() == Milter.REJECT
    assert ctx._reply == ("552", "5.3.4", "Message size exceeds fixed limit")
    assert harness.audit.events[-1].policy_hash == started_with


def test_a_reload_mid_transaction_leaves_its_recipient_limit(harness: Harness) -> None:
    """The limit was read again at each RCPT: with a reload between them, the third
    recipient was refused (limit 2) and the fourth taken (limit 9) in one message."""
    ctx = signed_in(harness)
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    for recipient in RECIPIENTS[:3]:
        ctx._envrcpt(f"<{recipient}>")
    harness.services.policies.swap(load_policy_set_from_sources(
        [("in.yaml", INBOUND), ("sub.yaml", SUBMISSION.replace("max_recipients: 2",
                                                                "max_recipients: 9"))]))
    assert ctx._envrcpt(f"<{RECIPIENTS[3]}>") == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("452", "4.5.3")
