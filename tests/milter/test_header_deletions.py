"""A message whose delivery needs more than MAX_HEADER_DELETIONS header deletions is
refused with 554 5.6.0 before any edit: Postfix's cleanup searches its queue file from
the top for each one, so n copies of a header to delete cost it O(n^2) (8,000 copies of
X-Postwarden-Id: 1.8 s of CPU per message; 13,000: a panic and a 451)."""

from __future__ import annotations

import logging
from pathlib import Path

import Milter
import pytest

from postwarden_milter.apply import (
    HEADER_DELETIONS_FLAG,
    MAX_HEADER_DELETIONS,
    TOO_MANY_HEADER_DELETIONS,
    MessageEdits,
    Outcome,
    apply_verdict,
)
from postwarden_milter.logcontext import MessageContextFilter
from postwarden_milter.reload import PolicyHolder
from postwarden_policies import (
    Accept,
    AddHeader,
    Decision,
    Discard,
    Quarantine,
    Reject,
    RemoveHeader,
    Verdict,
    load_policy_set_from_sources,
)
from tests.milter.conftest import Harness
from tests.milter.test_apply import Recorder
from tests.milter.test_callbacks import message

DOC = Path(__file__).parents[2] / "docs" / "policy-language.md"
REFUSED = (TOO_MANY_HEADER_DELETIONS.code, TOO_MANY_HEADER_DELETIONS.status,
           TOO_MANY_HEADER_DELETIONS.text)


def _edits(**counts: int) -> MessageEdits:
    return MessageEdits(uid="u1", id_header="X-Postwarden-Id", header_counts=counts,
                        recipients=("bob@example.net",), leading_space=True)


def test_the_reply_is_in_the_structure_limit_class() -> None:
    assert (TOO_MANY_HEADER_DELETIONS.code, TOO_MANY_HEADER_DELETIONS.status) == ("554", "5.6.0")
    assert MAX_HEADER_DELETIONS == 100


def test_up_to_the_bound_every_deletion_is_sent() -> None:
    # Ours and a policy's count together: 60 + 40, the copy a rule added among them.
    verdict = Verdict(Accept(), edits=(AddHeader("X-Spam", "x"), RemoveHeader("X-Spam")))
    actions = Recorder()
    applied = apply_verdict(actions, verdict, _edits(**{"x-postwarden-id": 60, "x-spam": 39}))
    assert applied.outcome is Outcome.CONTINUE and applied.refused is None
    deleted = [c for c in actions.calls if c[0] == "chgheader" and c[3] == ""]
    assert len(deleted) == MAX_HEADER_DELETIONS


@pytest.mark.parametrize("decision", [Accept(), Quarantine("held")], ids=["accept", "quarantine"])
def test_past_the_bound_the_message_is_refused_before_any_edit(decision: Decision) -> None:
    verdict = Verdict(decision, edits=(AddHeader("X-Spam", "x"), RemoveHeader("X-Spam")))
    actions = Recorder()
    applied = apply_verdict(actions, verdict, _edits(**{"x-postwarden-id": 61, "x-spam": 39}))
    assert (applied.outcome, applied.reply) == (Outcome.REJECT, TOO_MANY_HEADER_DELETIONS)
    assert applied.flags == {HEADER_DELETIONS_FLAG}
    assert applied.refused == Verdict(Reject(TOO_MANY_HEADER_DELETIONS))  # none of its edits
    assert actions.calls == [("setreply", *REFUSED)]  # no edit, no quarantine


@pytest.mark.parametrize(("decision", "outcome"), [(Reject(), Outcome.REJECT),
                                                    (Discard(), Outcome.DISCARD)])
def test_a_message_not_delivered_needs_no_deletion(decision: Decision, outcome: Outcome) -> None:
    actions = Recorder()
    applied = apply_verdict(actions, Verdict(decision), _edits(**{"x-postwarden-id": 500}))
    assert applied.outcome is outcome and applied.refused is None


def _copies(name: str, count: int) -> bytes:
    return f"{name}: forged\r\n".encode() * count


def test_500_copies_of_our_id_header_are_refused_and_audited_as_a_reject(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(MessageContextFilter())
    ctx = harness.connect(queue_id="4QIDS")
    assert ctx.send(message("ids", extra=_copies("X-Postwarden-Id", 500))) == Milter.REJECT
    assert ctx._reply == REFUSED
    assert ctx.header_edits == []
    [event] = harness.audit.events
    assert (event.action, event.smtp_reply) == ("reject", str(TOO_MANY_HEADER_DELETIONS))
    assert HEADER_DELETIONS_FLAG in event.flags
    assert (event.queue_id, event.subject, event.rules) == ("4QIDS", "ids", ())
    assert harness.metrics.registry.get_sample_value(
        "postwarden_messages_total", {"verdict": "reject"}) == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "refused (its verdict: accept): 500 header deletions needed, past 100 "
        "(X-Postwarden-Id x500)")
    assert getattr(warning, "queue_id", None) == "4QIDS"


WATCHED = """\
version: 1
name: watch
rules:
  - name: watch
    when: {subject: "^ids$"}
    then: {notify: [soc], add_header: {X-Watched: "yes"}}
"""
TRIAL = """\
version: 1
name: trial
mode: report
rules:
  - name: trial
    when: {subject: "^ids$"}
    then: {notify: [trial-soc]}
"""


def test_the_refusal_names_the_rules_that_matched_and_keeps_their_notify(
    harness: Harness,
) -> None:
    # The row named no rule and the rules' notify was never raised: a search by the rule
    # missed the message, and the endpoint heard nothing of it.
    harness.use(policies=PolicyHolder(load_policy_set_from_sources(
        [("watch.yaml", WATCHED), ("trial.yaml", TRIAL)])))
    ctx = harness.connect()
    assert ctx.send(message("ids", extra=_copies("X-Postwarden-Id", 500))) == Milter.REJECT
    assert ctx.header_edits == []
    [event] = harness.audit.events
    assert (event.action, event.smtp_reply) == ("reject", str(TOO_MANY_HEADER_DELETIONS))
    assert (event.rules, event.notify) == (("watch", "report:trial"), ("soc",))
    assert {HEADER_DELETIONS_FLAG, "report_only"} <= set(event.flags)
    assert event.changes == ()  # none of the verdict's edits was made
    assert harness.metrics.registry.get_sample_value(
        "postwarden_rule_matches_total", {"rule": "watch"}) == 1


def test_our_flags_header_counts_while_tag_flags_is_on(harness: Harness) -> None:
    extra = _copies("X-Postwarden-Flags", 60) + _copies("X-Postwarden-Id", 41)
    assert harness.connect().send(message("tags", extra=extra)) == Milter.REJECT
    assert harness.audit.events[0].action == "reject"


def test_up_to_the_bound_the_copies_are_removed(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(message("ids", extra=_copies("X-Postwarden-Id", 100))) == Milter.CONTINUE
    assert len(ctx.header_edits) == 101  # 100 deletions, then ours
    assert harness.audit.events[0].action == "accept"


def test_without_the_id_header_its_copies_need_no_deletion(harness: Harness) -> None:
    harness.configure(id_header="")
    ctx = harness.connect()
    assert ctx.send(message("ids", extra=_copies("X-Postwarden-Id", 500))) == Milter.CONTINUE
    assert ctx.header_edits == []


def test_a_field_after_a_lone_cr_cannot_be_removed_and_the_docs_say_so(
    harness: Harness,
) -> None:
    """Readers show a field written after a lone CR as one of its own; to Postfix (with
    cleanup_replace_stray_cr_lf off, or before it) it is text of the field before, which
    no chgheader reaches: a forged X-External: no stays, the message flagged bare_cr."""
    policy = ("version: 1\nname: tag\nrules:\n  - name: tag\n    when: {subject: '.'}\n"
              "    then: {remove_header: [X-External], add_header: {X-External: 'yes'}}\n")
    harness.services.policies.swap(load_policy_set_from_sources([("tag.yaml", policy)]))
    ctx = harness.connect()
    extra = b"X-External: no\r\nX-Note: hi\rX-External: no\r\n"
    assert ctx.send(message("hello", extra=extra)) == Milter.CONTINUE
    # One removal: of the one field Postfix counts; the hidden copy stays.
    assert [edit for edit in ctx.header_edits if edit[1] == "X-External"] == [
        ("change", "X-External", 1, ""), ("add", "X-External", " yes")]
    assert {"bare_cr", "malformed"} <= set(harness.audit.events[0].flags)
    doc = " ".join(DOC.read_text(encoding="utf-8").split())
    assert ("A header field written after a lone CR (`bare_cr`), which readers show as a "
            "field of its own, is to Postfix text of the field before it: `remove_header` "
            "cannot reach it") in doc
