"""Re-deliveries through the callbacks: what is recorded, and what a retry or a split is."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from types import ModuleType
from typing import Any

import Milter
import pytest

from postwarden_milter import decider, handler
from postwarden_milter.reload import PolicyHolder
from postwarden_policies import load_policy_set_from_sources
from tests.milter.conftest import Harness
from tests.milter.test_callbacks import CLEAN

Setup = Callable[[Harness, pytest.MonkeyPatch], None]


def answering(action: str) -> Setup:
    """A policy set whose one rule answers ``action`` to every message."""
    policy = f"version: 1\nname: {action}\nrules:\n  - name: all\n    when:\n" \
             f"      subject: '.*'\n    then: {action}\n"

    def use(harness: Harness, _monkeypatch: pytest.MonkeyPatch) -> None:
        harness.use(policies=PolicyHolder(load_policy_set_from_sources([("p.yaml", policy)])))

    return use


def failing(module: ModuleType, name: str) -> Setup:
    """``module``'s ``name`` (the decider's evaluate, the handler's apply_verdict) raising."""

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"{name} failed")

    def use(_harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(module, name, broken)

    return use


def past_deadline(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decided on the pool, which gives up at the deadline (one decided here is answered)."""
    monkeypatch.setattr(decider, "INLINE_BYTES", 0)
    harness.configure(message_timeout_seconds=1e-9)


def _redelivered(harness: Harness, ctx: Any) -> bool:
    flagged = "duplicate" in harness.audit.events[-1].flags
    assert flagged == (("add", "X-Redelivered", " yes") in ctx.header_edits)  # the policy saw it
    return flagged


@pytest.mark.parametrize(("first_attempt", "answer"), [
    pytest.param(past_deadline, Milter.TEMPFAIL, id="deadline"),
    pytest.param(answering("tempfail"), Milter.TEMPFAIL, id="tempfail-rule"),
    pytest.param(answering("reject"), Milter.REJECT, id="reject-rule"),
    pytest.param(failing(decider, "evaluate"), Milter.TEMPFAIL, id="evaluation-error"),
    pytest.param(failing(handler, "apply_verdict"), Milter.TEMPFAIL, id="apply-error"),
])
def test_the_retry_of_a_message_not_delivered_is_no_redelivery(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, first_attempt: Setup, answer: int,
) -> None:
    normal = harness.services
    first_attempt(harness, monkeypatch)
    assert harness.connect(queue_id="4QFIRST").send(CLEAN) == answer
    harness.services.workers.shutdown(wait=True)  # a job past its deadline has ended too
    monkeypatch.undo()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as workers:
        harness.use(settings=normal.settings, policies=normal.policies, workers=workers)
        retry = harness.connect(queue_id="4QRETRY")
        assert retry.send(CLEAN) == Milter.CONTINUE
        assert not _redelivered(harness, retry)
        again = harness.connect(queue_id="4QAGAIN")  # the retry was delivered: now it counts
        assert again.send(CLEAN) == Milter.CONTINUE
        assert _redelivered(harness, again)


@pytest.mark.parametrize(("first_attempt", "answer"), [
    pytest.param(answering("discard"), Milter.DISCARD, id="discarded"),
    pytest.param(answering("quarantine"), Milter.CONTINUE, id="quarantined"),
])
def test_a_message_taken_and_sent_again_is_a_redelivery(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, first_attempt: Setup, answer: int,
) -> None:
    """The client heard 250 for a discarded or held message as for a delivered one."""
    normal = harness.services.policies
    first_attempt(harness, monkeypatch)
    assert harness.connect().send(CLEAN) == answer
    harness.use(policies=normal)
    again = harness.connect()
    assert again.send(CLEAN) == Milter.CONTINUE
    assert _redelivered(harness, again)


def test_the_parts_of_a_message_split_by_recipients_are_no_redeliveries(
    harness: Harness,
) -> None:
    rcpts = tuple(f"r{n}@example.net" for n in range(5))
    first = harness.connect()
    assert first.send(CLEAN, recipients=rcpts) == Milter.CONTINUE  # 452 past the third
    assert harness.audit.events[-1].recipients == rcpts[:3]
    rest = harness.connect()  # the sending MTA's next transaction, for the others
    assert rest.send(CLEAN, recipients=rcpts[3:]) == Milter.CONTINUE
    assert not _redelivered(harness, rest)
    again = harness.connect()  # the first part again, recipients in another order and case
    assert again.send(CLEAN, recipients=tuple(r.upper() for r in reversed(rcpts[:3]))) \
        == Milter.CONTINUE
    assert _redelivered(harness, again)


@pytest.mark.parametrize(("first", "then", "redelivery"), [
    pytest.param("BOB@example.net", "bob@example.net", True, id="ascii-case"),
    pytest.param("J\u00d6RG@example.net", "j\u00f6rg@example.net", False, id="unicode-case"),
])
def test_a_recipient_in_another_case_is_another_without_smtputf8(
    harness: Harness, first: str, then: str, redelivery: bool,
) -> None:
    """Without SMTPUTF8 Postfix folds ASCII letters only (session.recipient_key): the
    same message to JÖRG and then to jörg went to two mailboxes, and once passed the
    second for a re-delivery of the first (which a policy may discard)."""
    assert harness.connect().send(CLEAN, recipients=(first,)) == Milter.CONTINUE
    again = harness.connect()
    assert again.send(CLEAN, recipients=(then,)) == Milter.CONTINUE
    assert _redelivered(harness, again) == redelivery
