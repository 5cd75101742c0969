"""A sendmail(1) submission tempfailed at end of message, pass after pass (pickup retries
it from the maildrop queue forever): past local_retry_passes it is held instead."""

from __future__ import annotations

import Milter
import pytest

from postwarden_milter import decider
from postwarden_milter.localretries import RETRIES_EXHAUSTED, LocalRetries
from postwarden_milter.session import Transaction
from tests.milter.conftest import Ctx, Harness
from tests.milter.test_callbacks import CLEAN
from tests.milter.test_redelivery import Setup, answering, failing, past_deadline


def _local(harness: Harness) -> Ctx:
    ctx = harness.connect()
    ctx._priv._handler._client.local = True  # sendmail(1): TestCtx cannot say port 0
    return ctx


@pytest.mark.parametrize(("deferring", "deferred", "rules"), [
    pytest.param(answering("tempfail"), "tempfail", ("all",), id="tempfail-rule"),
    pytest.param(failing(decider, "evaluate"), "error", (), id="internal-error"),
    pytest.param(past_deadline, "error", (), id="deadline"),
])
def test_a_local_submission_tempfailed_past_its_passes_is_held(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, deferring: Setup, deferred: str,
    rules: tuple[str, ...],
) -> None:
    harness.configure(local_retry_passes=2)
    deferring(harness, monkeypatch)
    passes = [_local(harness) for _ in range(4)]
    answers = [ctx.send(CLEAN) for ctx in passes]
    # Held at the third pass; the count starts again (released and tempfailed again).
    assert answers == [Milter.TEMPFAIL, Milter.TEMPFAIL, Milter.CONTINUE, Milter.TEMPFAIL]
    held = passes[2].quarantined
    assert held is not None and held.startswith("postwarden: ") \
        and held.endswith(" 2 times from the maildrop queue")
    row = harness.audit.events[2]
    assert (row.action, row.rules) == ("quarantine", rules)
    assert RETRIES_EXHAUSTED in row.flags
    assert [e.action for e in harness.audit.events] == [deferred, deferred, "quarantine",
                                                        deferred]


def test_an_smtp_client_is_tempfailed_every_time(harness: Harness,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Its own queue bounds its retries (maximal_queue_lifetime): nothing is held here.
    harness.configure(local_retry_passes=1)
    answering("tempfail")(harness, monkeypatch)
    assert [harness.connect().send(CLEAN) for _ in range(3)] == [Milter.TEMPFAIL] * 3


def _pass(body: bytes = b"Hello.\r\n", queue_id: str = "4QPASS") -> Transaction:
    """One pass of a maildrop file: pickup gives it a new queue id, cleanup a Message-ID."""
    txn = Transaction(sender="cron@example.org", auth_user=None, memory_threshold=1024,
                      max_bytes=None, queue_id=queue_id)
    txn.add_recipient("root@example.org", (), None)
    txn.add_header("Message-ID", f" <{queue_id}@example.org>".encode(), True)
    txn.add_body(body)
    return txn


def test_passes_are_counted_by_content_and_forgotten_once_one_passes() -> None:
    retries = LocalRetries(2)
    assert [retries.exhausted(_pass(queue_id=f"4Q{n}")) for n in range(3)] == [None, None, 2]
    assert retries.exhausted(_pass()) is None  # held: counted again from the start
    assert retries.exhausted(_pass(b"Other.\r\n")) is None
    retries.passed(_pass())  # delivered: its count is gone, the other's stays
    assert retries.exhausted(_pass()) is None and retries.exhausted(_pass()) is None
    assert retries.exhausted(_pass(b"Other.\r\n")) is None
    assert retries.exhausted(_pass(b"Other.\r\n")) == 2


def test_the_counts_are_bounded_and_off_at_zero() -> None:
    retries = LocalRetries(1, tracked=2)
    for body in (b"a\r\n", b"b\r\n", b"c\r\n"):  # a, the oldest, is forgotten
        assert retries.exhausted(_pass(body)) is None
    assert retries.exhausted(_pass(b"a\r\n")) is None
    assert retries.exhausted(_pass(b"c\r\n")) == 1
    off = LocalRetries(0)
    assert [off.exhausted(_pass()) for _ in range(3)] == [None] * 3
