"""A sendmail(1) submission tempfailed at end of message, pass after pass (pickup retries
it from the maildrop queue forever): past local_retry_passes it is held instead."""

from __future__ import annotations

from pathlib import Path

import Milter
import pytest

from postwarden_milter import decider, handler
from postwarden_milter.localretries import (
    FILE_NAME,
    RETRIES_EXHAUSTED,
    STALE_SECONDS,
    LocalRetries,
)
from postwarden_milter.session import Transaction
from postwarden_policies import PolicySet
from tests.milter.conftest import Ctx, Harness
from tests.milter.test_callbacks import CLEAN
from tests.milter.test_redelivery import Setup, answering, failing, past_deadline
from tests.test_docs_claims import POSTFIX_README


def _local(harness: Harness) -> Ctx:
    ctx = harness.connect()
    ctx._priv._handler._client.local = True  # sendmail(1): TestCtx cannot say port 0
    return ctx


@pytest.mark.parametrize(("deferring", "deferred", "rules"), [
    pytest.param(answering("tempfail"), "tempfail", ("all",), id="tempfail-rule"),
    pytest.param(failing(decider, "evaluate"), "error", (), id="internal-error"),
    # After a verdict that lets it in: its passes were started again first.
    pytest.param(failing(handler, "apply_verdict"), "error", (), id="apply-error"),
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


def test_a_tempfail_verdict_failing_after_it_counts_its_pass_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The verdict counted the pass, and the failure answered after it (applying the
    verdict) counted it again: held at half its passes. Held at the pass past them, it
    is held though applying the hold fails."""
    harness.configure(local_retry_passes=3)
    answering("tempfail")(harness, monkeypatch)
    failing(handler, "apply_verdict")(harness, monkeypatch)
    answers = [_local(harness).send(CLEAN) for _ in range(5)]
    assert answers == [Milter.TEMPFAIL] * 3 + [Milter.CONTINUE, Milter.TEMPFAIL]
    assert [e.action for e in harness.audit.events] == ["error"] * 3 + ["quarantine", "error"]
    assert RETRIES_EXHAUSTED in harness.audit.events[3].flags


@pytest.mark.parametrize("deferring", [
    pytest.param(failing(handler, "esmtp_size"), id="mail"),
    # Before its transaction opened: nothing was kept of it, so nothing counted.
    pytest.param(failing(handler, "esmtp_param"), id="mail-before-transaction"),
    pytest.param(failing(Transaction, "learn_origin"), id="mail-before-admission"),
    pytest.param(failing(PolicySet, "limits_for"), id="mail-limits"),
    pytest.param(failing(Transaction, "add_recipient"), id="rcpt"),
])
def test_a_local_submission_failing_at_mail_or_rcpt_is_held_past_its_passes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, deferring: Setup,
) -> None:
    # Tempfailed at MAIL or RCPT, it never reached end of message, where passes are
    # counted: pickup retried it forever, each pass a traceback and no audit row.
    harness.configure(local_retry_passes=2)
    deferring(harness, monkeypatch)
    answers = [_local(harness).send(CLEAN) for _ in range(3)]
    assert answers == [Milter.TEMPFAIL, Milter.TEMPFAIL, Milter.CONTINUE]
    assert [e.action for e in harness.audit.events] == ["error", "error", "quarantine"]
    held = harness.audit.events[2]
    assert RETRIES_EXHAUSTED in held.flags and held.sender == "alice@example.org"
    smtp = harness.connect()  # an SMTP client: refused at once, at the step that failed
    answer = smtp._envfrom("<alice@example.org>")
    if answer == Milter.CONTINUE:
        answer = smtp._envrcpt("<bob@example.net>")
    assert answer == Milter.TEMPFAIL


def test_a_local_submission_whose_event_cannot_be_stored_is_not_counted(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The milter's own state, as a full spool at MAIL FROM: held, the message would have
    no audit row; it waits in the maildrop queue until the spool drains, as the Postfix
    notes say (they named the refusal at MAIL FROM only)."""
    harness.configure(local_retry_passes=1)
    monkeypatch.setattr(harness.audit, "submit", lambda _event, *, refusable=False: not refusable)
    assert [_local(harness).send(CLEAN) for _ in range(3)] == [Milter.TEMPFAIL] * 3
    notes = " ".join(POSTFIX_README.read_text(encoding="utf-8").split())
    uncounted = notes[notes.index("What the milter refuses for its own state is not counted"):]
    assert "at end of message for a message whose audit event it can neither store nor queue" \
        in uncounted[:uncounted.index("such mail waits for it")]


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


def test_passes_are_counted_by_content_and_forgotten_once_one_passes(tmp_path: Path) -> None:
    retries = LocalRetries(2, tmp_path)
    assert [retries.exhausted(_pass(queue_id=f"4Q{n}")) for n in range(3)] == [None, None, 2]
    assert retries.exhausted(_pass()) is None  # held: counted again from the start
    assert retries.exhausted(_pass(b"Other.\r\n")) is None
    key = retries.counted_key(_pass())
    assert key is not None
    retries.passed(key)  # delivered: its count is gone, the other's stays
    assert retries.exhausted(_pass()) is None and retries.exhausted(_pass()) is None
    assert retries.exhausted(_pass(b"Other.\r\n")) is None
    assert retries.exhausted(_pass(b"Other.\r\n")) == 2


def test_the_counts_are_bounded_and_off_at_zero(tmp_path: Path) -> None:
    retries = LocalRetries(1, tmp_path, tracked=2)
    for body in (b"a\r\n", b"b\r\n", b"c\r\n"):  # a, the oldest, is forgotten
        assert retries.exhausted(_pass(body)) is None
    assert retries.exhausted(_pass(b"a\r\n")) is None
    assert retries.exhausted(_pass(b"c\r\n")) == 1
    off = LocalRetries(0, tmp_path / "off")
    assert [off.exhausted(_pass()) for _ in range(3)] == [None] * 3


def test_the_workers_count_together_and_a_restart_forgets_nothing(tmp_path: Path) -> None:
    # Each of `processes` workers sees some of pickup's passes, and a milter restarted
    # in between (a crash on that very message) saw each pass as its first: counted
    # per process, in memory, the bound was `processes` times as many passes, or none.
    workers = [LocalRetries(3, tmp_path) for _ in range(2)]
    assert [workers[n % 2].exhausted(_pass(queue_id=f"4Q{n}")) for n in range(3)] == [None] * 3
    restarted = LocalRetries(3, tmp_path)
    assert restarted.exhausted(_pass()) == 3


def test_a_torn_last_record_is_left_out(tmp_path: Path) -> None:
    retries = LocalRetries(2, tmp_path)
    assert retries.exhausted(_pass()) is None
    with (tmp_path / FILE_NAME).open("ab") as file:
        file.write(b"torn")
    assert retries.exhausted(_pass()) is None
    assert retries.exhausted(_pass()) == 2


def test_a_file_that_cannot_be_written_counts_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    retries = LocalRetries(1, tmp_path / "missing")
    assert [retries.exhausted(_pass()) for _ in range(3)] == [None] * 3
    assert retries.counted_key(_pass()) is None
    assert "cannot count a local submission's passes: No such file or directory" in caplog.text


def test_a_message_whose_passes_stopped_for_a_day_starts_again(tmp_path: Path) -> None:
    # Kept across restarts, a count left by a message deleted from the queue held the same
    # content submitted again days later (a cron job's daily report) at its first deferral.
    now = [1_000_000.0]
    retries = LocalRetries(2, tmp_path, clock=lambda: now[0])
    assert [retries.exhausted(_pass()) for _ in range(2)] == [None, None]
    now[0] += STALE_SECONDS + 1
    assert [retries.exhausted(_pass()) for _ in range(3)] == [None, None, 2]


def test_with_no_bound_the_file_is_not_touched(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """local_retry_passes 0 counts nothing, and check and the start look at no counts then:
    a file left from a bound set before (one this user may not use, here one that is no
    file) was still read at every local submission not tempfailed, an error logged each."""
    (tmp_path / FILE_NAME).mkdir()
    retries = LocalRetries(0, tmp_path)
    assert retries.counted_key(_pass()) is None
    assert retries.exhausted(_pass()) is None
    assert "cannot count" not in caplog.text
