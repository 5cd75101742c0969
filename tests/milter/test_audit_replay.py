"""A long replay of the audit spool, once PostgreSQL is back after an outage: new mail's
events keep being written, a stop ends it, a full spool makes room as it goes, and the
metrics show how much is left to replay."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from postwarden_milter import audit_pipeline
from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget
from postwarden_policies import AuditEvent
from tests.fixtures.postgres import wait_until
from tests.milter.test_audit_wedges import _dropped, _session, _stored
from tests.store.test_audit import UNREACHABLE, make_event

pytestmark = pytest.mark.postgres

BATCH = 10  # events per replayed batch (BATCH_SIZE), each batch with one slow event
SLOW_SECONDS = 0.2


@contextmanager
def _slow_backlog(dsn: str, spool_dir: Path, batches: int, budget: SpoolBudget
                  ) -> Iterator[tuple[AuditSpool, list[AuditEvent]]]:
    """A spool of ``batches`` batches, each holding one event whose insert takes
    SLOW_SECONDS meanwhile (a trigger): a replay of a few seconds."""
    marker = f"<slow-{uuid.uuid4().hex}"
    backlog = [make_event(message_id=f"{marker}-{n}@replay.test" if n % BATCH == 0 else None)
               for n in range(batches * BATCH)]
    spool = AuditSpool(spool_dir, budget)
    spool.append(backlog)
    with _session(dsn) as run:
        run(f"""
            CREATE FUNCTION audit_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep({SLOW_SECONDS}); RETURN NEW; END $$;
            CREATE TRIGGER audit_test_slow BEFORE INSERT ON audit_events FOR EACH ROW
                WHEN (NEW.message_id LIKE '{marker}%') EXECUTE FUNCTION audit_test_slow();
        """)
        try:
            yield spool, backlog
        finally:
            run("DROP TRIGGER audit_test_slow ON audit_events; DROP FUNCTION audit_test_slow()")


@contextmanager
def _writer(dsn: str, spool: AuditSpool, metrics: Metrics, *, queue_size: int = 1000,
            stop_timeout: float = 30.0,
            action: SpoolFullAction = SpoolFullAction.TEMPFAIL) -> Iterator[AuditPipeline]:
    loop = LoopThread()
    loop.start()
    pipeline = AuditPipeline(dsn, spool, metrics, queue_size=queue_size,
                             spool_full_action=action)
    pipeline.start(loop)
    try:
        yield pipeline
    finally:
        pipeline.stop(stop_timeout)
        loop.stop()


def _replaying(metrics: Metrics, spool: AuditSpool) -> bool:
    """Part of the spool is in Postgres, the rest not yet."""
    written = metrics.registry.get_sample_value("postwarden_audit_written_total") or 0
    return written > 0 and spool.size > 0


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_pipeline, "BATCH_SIZE", BATCH)


def test_new_mails_events_are_written_while_a_long_spool_replays(
    database_url: str, tmp_path: Path,
) -> None:
    metrics = Metrics()
    live = [make_event() for _ in range(150)]
    with _slow_backlog(database_url, tmp_path, 15, SpoolBudget(10**9)) as (spool, backlog), \
            _writer(database_url, spool, metrics, queue_size=50) as pipeline:
        assert wait_until(lambda: _replaying(metrics, spool), timeout=15)
        for event in live:  # 150 events in about 1.5 s, for a queue of 50
            pipeline.submit(event)
            time.sleep(0.01)
        assert spool.size > 0  # the replay was still under way
        assert wait_until(lambda: spool.size == 0, timeout=30)
    assert _dropped(metrics, "queue_full") == 0
    assert _stored(database_url, *live, *backlog)


def test_a_stop_mid_replay_writes_the_queue_and_leaves_the_rest_for_the_next_start(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    live = [make_event() for _ in range(20)]
    with _slow_backlog(database_url, tmp_path, 40, SpoolBudget(10**9)) as (spool, backlog):
        with _writer(database_url, spool, metrics, stop_timeout=3.0) as pipeline:
            assert wait_until(lambda: _replaying(metrics, spool), timeout=15)
            for event in live:
                pipeline.submit(event)
        # stopped well within its 3 s, most of the 8 s of replay left undone
        assert "audit writer did not drain" not in caplog.text
        assert spool.size > 0
    with _writer(database_url, spool, Metrics()):
        assert wait_until(lambda: spool.size == 0, timeout=30)  # the next start
    assert _stored(database_url, *live, *backlog)


def test_a_stop_before_a_full_spool_is_replayed_writes_the_queue_rather_than_drop_it(
    database_url: str, tmp_path: Path,
) -> None:
    """`spool_full_action: drop`, Postgres back, the spool not replayed yet: a stop
    spooled the queue (the replay's order), and over a full spool that dropped it, with
    Postgres there to take it."""
    metrics = Metrics()
    budget = SpoolBudget(10**9)
    spool = AuditSpool(tmp_path, budget)
    spool.append([make_event() for _ in range(3)])
    budget.max_bytes = spool.size
    live = [make_event() for _ in range(5)]
    with _writer(database_url, spool, metrics, action=SpoolFullAction.DROP) as pipeline:
        for event in live:  # stopped before the writer's first round
            pipeline.submit(event)
    assert _dropped(metrics, "spool_full") == 0
    assert _stored(database_url, *live)


def test_a_full_spool_stops_refusing_mail_as_its_replay_makes_room(
    database_url: str, tmp_path: Path,
) -> None:
    metrics = Metrics()
    budget = SpoolBudget(10**9)
    with _slow_backlog(database_url, tmp_path, 15, budget) as (spool, _):
        budget.max_bytes = spool.size  # exactly full: mail is refused
        with _writer(database_url, spool, metrics) as pipeline:
            assert pipeline.refusing_mail
            # accepted again while the replay is still under way, not once it ended
            assert wait_until(lambda: not pipeline.refusing_mail and spool.size > 0,
                              timeout=15)


def _pending(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("postwarden_audit_spool_pending_bytes")


def _replayed(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("postwarden_audit_replayed_total") or 0


def test_the_metrics_show_what_is_left_to_replay_from_a_start_to_the_end(
    database_url: str, tmp_path: Path,
) -> None:
    with _slow_backlog(database_url, tmp_path, 15, SpoolBudget(10**9)) as (spool, backlog):
        whole = spool.size
        # A start with the spool an earlier run left, Postgres still away: all of it pending.
        outage = Metrics()
        with _writer(UNREACHABLE, AuditSpool(tmp_path, SpoolBudget(10**9)), outage):
            assert _pending(outage) == whole
            assert _replayed(outage) == 0
        back = Metrics()
        with _writer(database_url, AuditSpool(tmp_path, SpoolBudget(10**9)), back):
            # under way: less left, some replayed
            assert wait_until(lambda: 0 < (_pending(back) or 0) < whole
                              and 0 < _replayed(back) < len(backlog), timeout=15)
            assert wait_until(lambda: spool.size == 0, timeout=30)
        assert _pending(back) == 0
        assert _replayed(back) == len(backlog)


def test_without_a_database_nothing_is_pending_replay(tmp_path: Path) -> None:
    """The spool is then the audit log, never replayed: no backlog to alert on."""
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([make_event()])
    metrics = Metrics()
    AuditPipeline(None, spool, metrics, queue_size=10, spool_full_action=SpoolFullAction.DROP)
    assert _pending(metrics) == 0
    assert metrics.registry.get_sample_value("postwarden_audit_spool_bytes") == spool.size > 0


def test_a_damaged_line_of_the_spool_is_counted_as_lost(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    first, last = make_event(), make_event()
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([first])
    with spool.path.open("ab") as handle:  # a line damaged on disk
        handle.write(b'{"event_id": "\x00\x00\x00 not an event\n')
    spool.append([last])
    metrics = Metrics()
    with _writer(database_url, spool, metrics):
        assert wait_until(lambda: spool.size == 0, timeout=15)
    assert _stored(database_url, first, last)
    assert _dropped(metrics, "unreadable") == 1
    offset = len(first.to_json()) + 1
    assert f"skipping an unreadable line at offset {offset}" in caplog.text


def test_a_spool_that_cannot_be_read_holds_back_no_new_event_and_is_not_blamed_on_postgres(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A replay whose read of the spool failed (EIO at a bad block, EACCES after a change
    of permissions; here EISDIR, which a test run as root can make) was taken for an
    outage: Postgres let go and said unavailable, and every new event spooled behind the
    backlog (or lost with it), none stored until the spool could be read again."""
    backlog = make_event()
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([backlog])
    aside = spool.path.rename(tmp_path / "aside")
    spool.path.mkdir()
    new = make_event()
    with _writer(database_url, spool, Metrics()) as pipeline:
        pipeline.submit(new)
        assert wait_until(lambda: _stored(database_url, new), timeout=10)
        assert "cannot read the audit spool" in caplog.text
        assert "audit database unavailable" not in caplog.text
        spool.path.rmdir()
        aside.rename(spool.path)
        assert wait_until(lambda: _stored(database_url, backlog), timeout=10)


def test_a_spool_that_cannot_be_looked_at_lets_postgres_take_new_events(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The same for a spool whose size cannot be read (ELOOP here; EACCES once spool_dir's
    permissions changed), before a replay: Postgres was let go at every batch, each
    spooled in vain, and with no connection the journal refused mail."""
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.path.symlink_to(spool.path.name)
    new = make_event()
    metrics = Metrics()
    with _writer(database_url, spool, metrics) as pipeline:
        pipeline.submit(new)
        assert wait_until(lambda: _stored(database_url, new), timeout=10)
        spool.path.unlink()
    assert "cannot read the audit spool" in caplog.text
    assert "audit database unavailable" not in caplog.text
    assert metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "audit_spool"}) >= 1


@contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """``path`` made immutable (chattr +i: root, as the tests run, may read it only)."""
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False,
                          timeout=30)
    if made.returncode != 0:
        pytest.skip(f"cannot make a file immutable: {made.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True, timeout=30)


def test_a_spool_that_cannot_be_emptied_once_replayed_holds_back_no_new_event(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A spool the milter may read and not write (copied back as root once moved away,
    say; here immutable): emptying it once replayed failed, taken for an outage at every
    batch (Postgres let go, said unavailable, the batch spooled in vain), and retried
    every FLUSH_SECONDS while idle."""
    backlog, new = make_event(), make_event()
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([backlog])
    with _immutable(spool.path), _writer(database_url, spool, Metrics()) as pipeline:
        assert wait_until(lambda: _stored(database_url, backlog), timeout=10)
        pipeline.submit(new)
        assert wait_until(lambda: _stored(database_url, new), timeout=10)
    assert caplog.text.count("cannot empty the audit spool") == 1
    assert "audit database unavailable" not in caplog.text
    assert "unexpected error" not in caplog.text


def test_events_a_replay_finds_stored_already_are_not_counted_again(
    database_url: str, tmp_path: Path,
) -> None:
    events = [make_event() for _ in range(3)]
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append(events)
    with _writer(database_url, spool, Metrics()):
        assert wait_until(lambda: spool.size == 0, timeout=15)
    spool.append(events)  # as a stop mid-replay leaves them for the next start
    metrics = Metrics()
    with _writer(database_url, spool, metrics):
        assert wait_until(lambda: spool.size == 0, timeout=15)
    assert metrics.registry.get_sample_value("postwarden_audit_written_total") == 0


def test_what_was_replayed_before_an_outage_stays_out_of_the_budget(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([make_event() for _ in range(4)])
    (_, half), _ = spool.batches(2)
    spool.replayed_to(half)  # then Postgres goes away again: the next batch is spooled
    spool.append([make_event()])
    assert spool.budget.used == spool.size - half


def test_a_damaged_line_read_again_by_a_later_replay_is_counted_once(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([make_event()])
    with spool.path.open("ab") as handle:
        handle.write(b"not an event\n")
    counted: list[None] = []
    for _ in range(2):  # a replay that failed, and the next
        list(spool.batches(10, unreadable=lambda: counted.append(None)))
    assert len(counted) == 1


def test_a_spool_moved_away_after_a_partial_replay_counts_the_new_file_whole(
    tmp_path: Path,
) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([make_event() for _ in range(4)])
    (_, half), _ = spool.batches(2)
    spool.replayed_to(half)
    spool.path.rename(tmp_path / "moved.jsonl")
    spool.append([make_event()])
    assert spool.budget.used == spool.size > 0


def test_events_spooled_after_the_spool_moved_away_mid_replay_are_replayed(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replay went on from where it stopped in the file moved away, past the end of
    the new one: it found nothing there, and emptied it, the events in it lost."""
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    backlog = [make_event() for _ in range(4 * BATCH)]
    spool.append(backlog)
    write = audit_pipeline.write_audit_batch
    calls: list[int] = []
    down = threading.Event()

    async def fails_third(conn: Any, batch: list[AuditEvent]) -> Any:
        calls.append(len(batch))
        if len(calls) == 3:  # mid-replay: Postgres goes, and the admin moves the spool
            spool.path.rename(tmp_path / "moved.jsonl")
            down.set()
        if down.is_set():
            raise ConnectionResetError("Postgres went away")
        return await write(conn, batch)

    monkeypatch.setattr(audit_pipeline, "write_audit_batch", fails_third)
    metrics = Metrics()
    fresh = [make_event() for _ in range(3)]
    with _writer(database_url, spool, metrics) as pipeline:
        assert wait_until(down.is_set, timeout=15)
        for event in fresh:
            pipeline.submit(event)
        assert wait_until(lambda: metrics.registry.get_sample_value(
            "postwarden_audit_spooled_total") == len(fresh), timeout=10)
        down.clear()
        assert wait_until(lambda: _stored(database_url, *fresh), timeout=15)
    assert _stored(database_url, *backlog[:2 * BATCH])


def test_a_full_spool_moved_away_by_hand_ends_the_refusal(tmp_path: Path) -> None:
    """Set aside to let mail in while Postgres is away: the size recorded at the last
    append kept the spools full, and mail refused, until a restart."""
    budget = SpoolBudget(10**9)
    spool = AuditSpool(tmp_path, budget)
    spool.append([make_event()])
    budget.max_bytes = spool.size
    with _writer(UNREACHABLE, spool, Metrics()) as pipeline:
        assert pipeline.refusing_mail
        spool.path.rename(tmp_path / "set-aside.jsonl")
        assert wait_until(lambda: not pipeline.refusing_mail, timeout=5)
