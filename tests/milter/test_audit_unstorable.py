"""A message whose audit event the milter can store nowhere (spool_dir full, journal and
spool alike, while PostgreSQL takes no events) is tempfailed at end of message under
`spool_full_action: tempfail`, not accepted with its audit row lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import Milter
import pytest

from postwarden_milter import audit_pipeline
from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.journal import AuditJournal
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget, spool_name
from postwarden_policies import AuditEvent
from tests.fixtures.postgres import wait_until
from tests.fixtures.smallfs import fill, small_filesystem
from tests.milter.conftest import Harness
from tests.milter.milterclient import MilterClient
from tests.milter.test_callbacks import CLEAN
from tests.milter.test_process import _env, _serving
from tests.store.test_audit import UNREACHABLE, make_event


@contextmanager
def journaled_pipeline(dsn: str | None, spool_dir: Path, metrics: Metrics,
              action: SpoolFullAction) -> Iterator[AuditPipeline]:
    loop = LoopThread()
    loop.start()
    pipeline = AuditPipeline(dsn, AuditSpool(spool_dir, SpoolBudget(10**9)), metrics,
                             queue_size=100, spool_full_action=action,
                             journal=AuditJournal(spool_dir))
    pipeline.start(loop)
    try:
        yield pipeline
    finally:
        pipeline.stop()
        loop.stop()


def _dropped(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "spool_error"})


@pytest.mark.parametrize("dsn", [None, UNREACHABLE], ids=["audit-log", "postgres-away"])
def test_a_message_whose_event_can_be_stored_nowhere_is_tempfailed(
        harness: Harness, tmp_path: Path, dsn: str | None) -> None:
    """The first message after spool_dir filled up was accepted: its journal line failed,
    then its batch's append to the spool, and the audit row was lost (counted
    spool_error) for a message Postfix had queued."""
    with small_filesystem(tmp_path / "full") as spool_dir:
        with journaled_pipeline(dsn, spool_dir, harness.metrics,
                                SpoolFullAction.TEMPFAIL) as pipeline:
            harness.use(audit=pipeline)
            fill(spool_dir)
            ctx = harness.connect()
            assert ctx.send(CLEAN) == Milter.TEMPFAIL
            assert ctx._reply == ("451", "4.3.0", "Temporary internal error, try again later")
        assert _dropped(harness.metrics) == 0
        assert harness.metrics.registry.get_sample_value(
            "postwarden_errors_total", {"kind": "spool_full"}) == 1


def test_with_drop_the_message_goes_on_and_the_loss_is_counted(
        harness: Harness, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "full") as spool_dir:
        with journaled_pipeline(None, spool_dir, harness.metrics, SpoolFullAction.DROP) as pipeline:
            harness.use(audit=pipeline)
            fill(spool_dir)
            ctx = harness.connect()
            assert ctx.send(CLEAN) == Milter.CONTINUE
        assert _dropped(harness.metrics) == 1


def test_a_message_whose_event_the_stuck_writer_cannot_take_is_tempfailed(
        harness: Harness, tmp_path: Path) -> None:
    """The audit queue full (the writer stuck, on a Postgres that takes a batch in
    minutes, say): the message was accepted and its event dropped, under tempfail."""
    pipeline = AuditPipeline(UNREACHABLE, AuditSpool(tmp_path, SpoolBudget(10**9)),
                             harness.metrics, queue_size=1,
                             spool_full_action=SpoolFullAction.TEMPFAIL,
                             journal=AuditJournal(tmp_path))
    harness.use(audit=pipeline)  # not started: nothing takes from the queue
    assert harness.connect().send(CLEAN) == Milter.CONTINUE
    ctx = harness.connect()
    assert ctx.send(CLEAN) == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.3.0", "Temporary internal error, try again later")
    assert harness.metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "queue_full"}) == 0
    assert harness.metrics.registry.get_sample_value(
        "postwarden_audit_queue_depth") == 1
    assert len(_journaled(tmp_path)) == 1  # the refused message's event is not kept


def _journaled(directory: Path) -> list[str]:
    return [line for path in directory.glob("audit-journal-*.jsonl")
            for line in path.read_text().splitlines()]


def test_events_the_spool_could_not_take_are_spooled_once_it_has_room(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their journal lines fitted, their batch's append did not: they stayed in the
    journal until the next start, out of the audit log (and, with a database, out of
    Postgres once it was back) for as long as the milter ran."""
    monkeypatch.setattr(audit_pipeline, "FLUSH_SECONDS", 1.0)  # time to fill it meanwhile
    events = [make_event(), make_event()]
    with small_filesystem(tmp_path / "full") as spool_dir:
        with journaled_pipeline(None, spool_dir, Metrics(), SpoolFullAction.TEMPFAIL) as pipeline:
            for event in events:  # journaled: the writer takes them within a second
                pipeline.submit(event)
            filler = fill(spool_dir)
            assert wait_until(lambda: pipeline.refusing_mail, timeout=10)
            filler.unlink()
            assert wait_until(lambda: _logged(spool_dir) == events, timeout=10)
        assert _journaled(spool_dir) == []


def _logged(spool_dir: Path) -> list[AuditEvent]:
    path = spool_dir / spool_name(0)
    return [AuditEvent.from_json(line) for line in path.read_text().splitlines()
            ] if path.exists() else []


def test_a_milter_without_a_database_refuses_mail_while_spool_dir_is_full(
        tmp_path: Path) -> None:
    """The milter as run (two workers, the spool as the audit log): once spool_dir is
    full (a journal's last page may take a few events more) messages are tempfailed,
    accepted again once it has room, and the audit log holds each accepted message
    once, and no refused one."""
    env = _env(tmp_path, processes="2")
    log_path = tmp_path / "milter.log"
    answers: dict[str, bytes] = {}

    def send(until: bytes) -> bool:
        """Messages, a quarter second apart, until one is answered ``until``."""
        for _ in range(40):
            queue_id = f"4QFULL{len(answers)}"
            code, data = client.message(queue_id)
            answers[queue_id] = data[:3] if code == b"y" else code
            if answers[queue_id] == until:
                return True
            time.sleep(0.25)
        return False

    with small_filesystem(tmp_path / "spool") as spool_dir:
        with _serving(env, log_path) as proc:
            assert wait_until(lambda: log_path.read_text().count("starting on") == 2,
                              timeout=30), log_path.read_text()
            client = MilterClient(env["POSTWARDEN_MILTER_SOCKET"]).open()
            assert send(until=b"c")
            filler = fill(spool_dir)
            assert send(until=b"451"), answers
            filler.unlink()
            assert send(until=b"c"), answers
            client.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        logged = [AuditEvent.from_json(line).queue_id  # each worker's audit log
                  for path in spool_dir.glob("audit-spool*.jsonl")
                  for line in path.read_text().splitlines()]
    accepted = [queue_id for queue_id, answer in answers.items() if answer == b"c"]
    assert sorted(logged) == sorted(accepted), answers


def test_a_journal_a_full_start_could_not_spool_is_spooled_once_it_has_room(
        tmp_path: Path) -> None:
    """The segments a start could not append to a full spool waited for the next start,
    out of the audit log for as long as the milter ran, though the disk had room again."""
    left = [make_event(), make_event()]
    later = make_event()
    with small_filesystem(tmp_path / "full") as spool_dir:
        (spool_dir / "audit-journal-0-3.jsonl").write_text(
            "".join(event.to_json() + "\n" for event in left))
        filler = fill(spool_dir)
        with journaled_pipeline(None, spool_dir, Metrics(), SpoolFullAction.DROP) as pipeline:
            filler.unlink()
            pipeline.submit(later)
            assert wait_until(lambda: _logged(spool_dir) == [*left, later], timeout=10)
            time.sleep(2 * audit_pipeline.SPOOL_PROBE_SECONDS)  # no second adoption
        assert _logged(spool_dir) == [*left, later]
        assert _journaled(spool_dir) == []


def test_a_journal_too_big_for_the_room_left_is_said_not_spooled_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Room for the probe, not for the segment: tried every second, said every second."""
    left = make_event()
    line = left.to_json() + "\n"
    with small_filesystem(tmp_path / "full") as spool_dir:
        (spool_dir / "audit-journal-0-3.jsonl").write_text(line * (150 * 1024 // len(line)))
        with journaled_pipeline(None, spool_dir, Metrics(), SpoolFullAction.DROP):
            time.sleep(3 * audit_pipeline.SPOOL_PROBE_SECONDS)
        assert caplog.text.count("not spooled (No space left on device)") == 1
