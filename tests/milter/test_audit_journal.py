"""The audit journal: an event is on disk before its message's reply leaves, so a milter
killed without a stop (kill -9, the OOM killer) loses no audit row; what it held is
stored once by the next start."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import pytest

from postwarden_milter import audit_pipeline
from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.journal import AuditJournal, adopt_orphan_journals, journal_segments
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget, spool_name
from postwarden_policies import AuditEvent
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.fixtures.processes import children_of
from tests.fixtures.smallfs import fill, small_filesystem
from tests.milter.milterclient import MilterClient
from tests.milter.test_process import _env, _serving
from tests.store.test_audit import make_event


def _segments(directory: Path) -> list[str]:
    return sorted(path.name for paths in journal_segments(directory).values() for path in paths)


def _events(path: Path) -> list[AuditEvent]:
    return [AuditEvent.from_json(line) for line in path.read_text().splitlines()]


def test_a_segment_goes_once_it_was_rotated_and_its_events_settled(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    first, second, third = make_event(), make_event(), make_event()
    journal.append(first)
    journal.append(second)
    assert _events(tmp_path / "audit-journal-0-0.jsonl") == [first, second]
    journal.settled([first, second])
    assert _segments(tmp_path) == ["audit-journal-0-0.jsonl"]  # appends still go there
    journal.rotate()
    assert _segments(tmp_path) == []
    journal.append(third)
    journal.rotate()  # the writer took a batch: the next event goes to a new segment
    journal.append(first)
    assert _segments(tmp_path) == ["audit-journal-0-1.jsonl", "audit-journal-0-2.jsonl"]
    journal.settled([third])
    assert _segments(tmp_path) == ["audit-journal-0-2.jsonl"]
    journal.settled([first])
    journal.rotate()  # at the stop
    assert _segments(tmp_path) == []


def test_what_was_not_settled_stays_for_the_next_start(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path, worker=3)
    kept = make_event()
    journal.append(kept)
    journal.rotate()  # at the stop
    assert _segments(tmp_path) == ["audit-journal-3-0.jsonl"]
    spool = AuditSpool(tmp_path, SpoolBudget(10**6, slots=4), 3)
    assert AuditJournal(tmp_path, worker=3).adopt(spool.append_lines) == 1
    assert _events(tmp_path / spool_name(3)) == [kept]
    assert _segments(tmp_path) == []


def test_adoption_keeps_the_order_and_cuts_a_line_torn_by_the_death(tmp_path: Path) -> None:
    events = [make_event() for _ in range(3)]
    (tmp_path / "audit-journal-0-10.jsonl").write_text(events[2].to_json() + "\n"
                                                       + events[0].to_json()[:50])
    (tmp_path / "audit-journal-0-9.jsonl").write_text(
        "".join(event.to_json() + "\n" for event in events[:2]))
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    assert AuditJournal(tmp_path).adopt(spool.append_lines) == 3
    assert _events(spool.path) == [events[0], events[1], events[2]]
    assert spool.budget.used == spool.size  # counted against spool_max_bytes


def test_a_line_a_power_cut_damaged_stays_out_of_the_audit_log_and_is_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A segment is never fsync'd: after a power cut it may hold a block of NULs where a
    line was (the file's size written, not its data). Without a database the spool is
    the audit log, read as JSON lines (jq): no such line goes there, and the loss is
    told. A raw carriage return in the damage splits no line either."""
    first, last = make_event(), make_event()
    (tmp_path / "audit-journal-0-0.jsonl").write_bytes(
        (first.to_json() + "\n").encode() + bytes(300) + b'\r"action":"accept"}\n'
        + b'{"event_id":"\xff\xfe"}\n' + (last.to_json() + "\n").encode())
    metrics = Metrics()
    loop = LoopThread()
    loop.start()
    pipeline = _pipeline(tmp_path, metrics)
    pipeline.start(loop)
    pipeline.stop()
    loop.stop()
    assert _events(tmp_path / spool_name(0)) == [first, last]
    assert metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "unreadable"}) == 2
    assert "2 damaged lines of worker 0 left out" in caplog.text


def test_journals_of_workers_no_longer_run_go_to_the_first_workers_spool(
        tmp_path: Path) -> None:
    orphan, kept = make_event(), make_event()
    (tmp_path / "audit-journal-2-0.jsonl").write_text(orphan.to_json() + "\n")
    (tmp_path / "audit-journal-1-0.jsonl").write_text(kept.to_json() + "\n")
    adopt_orphan_journals(tmp_path, workers=2, audit_log=False)
    assert _events(tmp_path / spool_name(0)) == [orphan]
    assert _segments(tmp_path) == ["audit-journal-1-0.jsonl"]  # worker 1 adopts its own


def test_an_orphan_journal_adds_nothing_twice_to_the_audit_log(tmp_path: Path) -> None:
    """No database: the orphan's spool, appended to the first's first (adopt_orphans),
    is the audit log, and holds some of the events its journal still lists (review of
    6 December)."""
    spooled, unspooled = make_event(), make_event()
    AuditSpool(tmp_path, SpoolBudget(10**9)).append([spooled])
    (tmp_path / "audit-journal-2-0.jsonl").write_text(
        spooled.to_json() + "\n" + unspooled.to_json() + "\n")
    adopt_orphan_journals(tmp_path, workers=1, audit_log=True)
    assert _events(tmp_path / spool_name(0)) == [spooled, unspooled]


def _pipeline(directory: Path, metrics: Metrics) -> AuditPipeline:
    return AuditPipeline(None, AuditSpool(directory, SpoolBudget(10**9)), metrics,
                         queue_size=100, spool_full_action=SpoolFullAction.TEMPFAIL,
                         journal=AuditJournal(directory))


def _start_and_stop(directory: Path) -> None:
    """A successor pipeline started (spooling what the journal holds) and stopped."""
    loop = LoopThread()
    loop.start()
    successor = _pipeline(directory, Metrics())
    successor.start(loop)
    successor.stop()
    loop.stop()


def test_a_pipeline_that_ends_without_a_stop_leaves_its_events_to_the_next(
        tmp_path: Path) -> None:
    """The events a pipeline held when its process died (its writer never took them) are
    in the spool once the next one starts, and the journal is empty again after a stop."""
    held = [make_event() for _ in range(4)]
    dead = _pipeline(tmp_path, Metrics())
    for event in held:
        dead.submit(event)  # never started: as good as killed before the writer ran
    loop = LoopThread()
    loop.start()
    successor = _pipeline(tmp_path, Metrics())
    successor.start(loop)
    later = make_event()
    successor.submit(later)
    successor.stop()
    loop.stop()
    assert _events(tmp_path / spool_name(0)) == [*held, later]
    assert _segments(tmp_path) == []


def test_a_journal_it_cannot_write_refuses_no_mail_and_is_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    pipeline = _pipeline(tmp_path, metrics)
    loop = LoopThread()
    loop.start()
    pipeline.start(loop)
    os.symlink("/dev/full", tmp_path / "audit-journal-0-0.jsonl")  # ENOSPC
    events = [make_event(), make_event()]
    for event in events:
        pipeline.submit(event)
    pipeline.stop()
    loop.stop()
    assert _events(tmp_path / spool_name(0)) == events
    assert metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "audit_journal"}) == 2
    assert [r.getMessage() for r in caplog.records if "audit journal" in r.getMessage()] == [
        "cannot append to the audit journal (No space left on device): 1 so far"]


def _descriptor_of(path: Path) -> int:
    """The descriptor this process has open on ``path``."""
    [fd] = [int(link.name) for link in Path("/proc/self/fd").iterdir()
            if os.path.realpath(link) == str(path)]
    return fd


def test_a_segment_whose_close_fails_is_counted_and_the_writer_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A close that fails (NFS says there a write it deferred failed) ended the writer's
    turn before its batch, at every turn, the events never written, with the descriptor
    kept to be closed again (Linux frees it whatever close says: another file's, once
    reused). The close is counted now, and the writer goes on. Here the segment's
    descriptor is closed under the journal, whose close then fails (EBADF)."""
    metrics = Metrics()
    pipeline = _pipeline(tmp_path, metrics)
    loop = LoopThread()
    loop.start()
    pipeline.start(loop)
    holding, held = threading.Event(), threading.Event()

    def hold() -> None:  # the writer's loop, until the descriptor is closed
        holding.set()
        held.wait(30)

    loop.loop.call_soon_threadsafe(hold)
    try:
        assert holding.wait(10)
        first = make_event()
        pipeline.submit(first)
        os.close(_descriptor_of(tmp_path / "audit-journal-0-0.jsonl"))
    finally:
        held.set()
    spool = tmp_path / spool_name(0)
    assert wait_until(lambda: spool.exists() and _events(spool) == [first], timeout=10)
    later = make_event()
    pipeline.submit(later)
    pipeline.stop()
    loop.stop()
    assert _events(spool) == [first, later]
    assert _segments(tmp_path) == []
    assert metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "audit_journal"}) == 1
    assert "cannot close an audit journal segment (Bad file descriptor)" in caplog.text
    assert "unexpected error" not in caplog.text


async def _queue_ids(dsn: str, prefix: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT queue_id FROM audit_events WHERE queue_id LIKE $1 "
                                "ORDER BY queue_id", f"{prefix}%")
    finally:
        await conn.close()
    return [row["queue_id"] for row in rows]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("processes", [1, 2])
def test_a_milter_killed_after_its_answers_loses_no_audit_row(
        tmp_path: Path, database_url: str, processes: int) -> None:
    """SIGKILL right after end of message is answered: the events were still in memory
    (the writer takes them every 0.2 s). A worker killed is replaced, a milter restarted;
    either way the rows appear, each once."""
    prefix = f"4QJ{processes}{time.monotonic_ns() % 10**8}X"
    env = _env(tmp_path, processes=str(processes), database_url=database_url)
    first_log, second_log = tmp_path / "milter.log", tmp_path / "restarted.log"
    queue_ids = [f"{prefix}{n}" for n in range(3)]

    def stored() -> bool:
        return asyncio.run(_queue_ids(database_url, prefix)) == queue_ids

    with _serving(env, first_log) as proc:
        assert wait_until(lambda: first_log.read_text().count("starting on") == processes,
                          timeout=30), first_log.read_text()
        client = MilterClient(env["POSTWARDEN_MILTER_SOCKET"]).open()
        for queue_id in queue_ids:
            assert client.message(queue_id)[0] == b"c"
        for pid in children_of(proc.pid) if processes > 1 else {proc.pid}:
            os.kill(pid, signal.SIGKILL)
        client.close()
        if processes > 1:  # the parent replaces its workers, which adopt the journals
            assert wait_until(stored, timeout=30), first_log.read_text()
            _stop(proc)
    if processes == 1:  # restarted, as systemd would
        with _serving(env, second_log) as restarted:
            assert wait_until(stored, timeout=30), second_log.read_text()
            _stop(restarted)
    said = first_log.read_text() + (second_log.read_text() if processes == 1 else "")
    # Those of the last answers at least: the writer may have taken the first meanwhile.
    assert re.search(r"audit journal: [123] events of a milter process that ended without "
                     r"a stop \(worker [01]\)", said), said
    assert list((tmp_path / "spool").glob("audit-journal-*")) == []  # all settled


def test_a_segment_it_cannot_delete_stops_nothing_and_is_said_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A read-only spool_dir (errors=remount-ro): the writer must go on."""
    def read_only(path: Path) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(Path, "unlink", read_only)
    journal = AuditJournal(tmp_path)
    for _ in range(2):
        event = make_event()
        journal.append(event)
        journal.rotate()
        journal.settled([event])
    assert _segments(tmp_path) == ["audit-journal-0-0.jsonl", "audit-journal-0-1.jsonl"]
    assert [r.getMessage() for r in caplog.records if "cannot delete" in r.getMessage()] == [
        "audit journal: cannot delete audit-journal-0-0.jsonl (Read-only file system): the "
        "next start spools its events again (said once)"]


def test_a_spool_that_takes_nothing_keeps_the_journal_and_appends_go_past_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    left = make_event()
    (tmp_path / "audit-journal-0-5.jsonl").write_text(left.to_json() + "\n")

    def full(data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    journal = AuditJournal(tmp_path)
    assert journal.adopt(full) == 0  # no exception: the milter starts
    assert "not spooled (No space left on device): kept for later" in caplog.text
    later = make_event()
    journal.append(later)  # a segment of its own, not appended to the one kept
    assert _events(tmp_path / "audit-journal-0-5.jsonl") == [left]
    assert _events(tmp_path / "audit-journal-0-6.jsonl") == [later]


def test_a_short_write_leaves_no_piece_for_the_next_event_to_join(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = AuditJournal(tmp_path)
    first, cut, after = make_event(), make_event(), make_event()
    journal.append(first)
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # the filesystem filled up midway
        monkeypatch.setattr(os, "write", real_write)
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(OSError, match="No space left"):
        journal.append(cut)
    journal.append(after)
    assert _events(tmp_path / "audit-journal-0-0.jsonl") == [first, after]


def test_without_a_database_an_event_already_in_the_log_is_not_added_twice(
        tmp_path: Path) -> None:
    """A segment spans several batches while the writer is behind: some of its events
    were appended to the audit log before the end."""
    logged = [make_event(), make_event()]
    unlogged = make_event()
    AuditSpool(tmp_path, SpoolBudget(10**9)).append(logged)
    (tmp_path / "audit-journal-0-0.jsonl").write_text(
        "".join(event.to_json() + "\n" for event in [*logged, unlogged]))
    _start_and_stop(tmp_path)
    assert _events(tmp_path / spool_name(0)) == [*logged, unlogged]


def test_events_the_spool_cannot_take_stay_in_the_journal_for_the_next_start(
        tmp_path: Path) -> None:
    """A spool_dir filling up: a batch's append fails (ENOSPC) where its events' journal
    lines, a few hundred bytes each, still fitted. They were deleted with the journal
    segment, counted as dropped: the audit rows of mail already accepted, lost."""
    os.symlink("/dev/full", tmp_path / spool_name(0))  # ENOSPC, as a full filesystem
    metrics = Metrics()
    events = [make_event(), make_event()]
    loop = LoopThread()
    loop.start()
    pipeline = _pipeline(tmp_path, metrics)
    pipeline.start(loop)
    for event in events:
        pipeline.submit(event)
    pipeline.stop()
    loop.stop()
    assert metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "spool_error"}) == 0
    (tmp_path / spool_name(0)).unlink()  # room again
    _start_and_stop(tmp_path)
    assert _events(tmp_path / spool_name(0)) == events
    assert _segments(tmp_path) == []


def test_an_event_dropped_for_a_full_queue_is_not_spooled_by_the_next_start(
        tmp_path: Path) -> None:
    """Counted dropped (spool_full_action: drop), its line stayed in the journal until
    the segment went: a kill -9 meanwhile made it an audit row at the next start."""
    metrics = Metrics()
    dead = AuditPipeline(None, AuditSpool(tmp_path, SpoolBudget(10**9)), metrics,
                         queue_size=1, spool_full_action=SpoolFullAction.DROP,
                         journal=AuditJournal(tmp_path))
    queued, dropped = make_event(), make_event()
    dead.submit(queued)
    dead.submit(dropped)  # never started: a writer stuck, then killed
    assert metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "queue_full"}) == 1
    _start_and_stop(tmp_path)
    assert _events(tmp_path / spool_name(0)) == [queued]
    assert _segments(tmp_path) == []


def test_a_dropped_event_of_a_rotated_segment_is_left_out_and_the_rest_kept(
        tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    kept, dropped = make_event(), make_event()
    journal.append(kept)
    journal.append(dropped)
    journal.rotate()  # the writer took a batch meanwhile
    journal.dropped([dropped])
    spooled: list[bytes] = []
    assert AuditJournal(tmp_path).adopt(spooled.append) == 1
    assert spooled == [(kept.to_json() + "\n").encode()]


def _page_sized() -> AuditEvent:
    """An event whose journal line fills a page: one appended after it needs a new one."""
    event = make_event(subject="")
    return make_event(event_id=event.event_id,
                      subject="x" * (4096 - len(event.to_json()) - 1))


def test_events_dropped_on_a_full_filesystem_are_left_out_all_the_same(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The line saying an event was dropped could not be appended to a full filesystem
    (its segment's last page full): logged, and the event came back at the next start.
    It now takes the event's place."""
    with small_filesystem(tmp_path / "full") as directory:
        journal = AuditJournal(directory)
        kept, rotated, current = _page_sized(), _page_sized(), _page_sized()
        journal.append(kept)
        journal.append(rotated)
        journal.rotate()  # the writer took a batch meanwhile
        journal.append(current)
        fill(directory)
        journal.dropped([rotated, current])
        spooled: list[bytes] = []
        assert AuditJournal(directory).adopt(spooled.append) == 1
    assert spooled == [(kept.to_json() + "\n").encode()]
    assert "cannot mark" not in caplog.text


# A milter whose writer dropped a first batch of a segment, its spool full under
# spool_full_action: drop (Postgres away), and was killed before it took the rest.
_DROPPED_THEN_KILLED = """
import sys, time
from pathlib import Path
from postwarden_milter.audit_pipeline import BATCH_SIZE, AuditPipeline
from postwarden_milter.journal import AuditJournal
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget
from postwarden_policies import AuditEvent

directory, dsn = Path(sys.argv[1]), sys.argv[2]
metrics = Metrics()
pipeline = AuditPipeline(dsn, AuditSpool(directory, SpoolBudget(1)), metrics,
                         queue_size=2 * BATCH_SIZE, spool_full_action=SpoolFullAction.DROP,
                         journal=AuditJournal(directory))
for line in sys.stdin:  # BATCH_SIZE + 2, in one segment: the writer is behind
    pipeline.submit(AuditEvent.from_json(line))
loop = LoopThread()
loop.start()
loop.submit(pipeline._deliver_or_drop(pipeline._take())).result()
print(metrics.registry.get_sample_value("postwarden_audit_dropped_total",
                                        {"reason": "spool_full"}), flush=True)
time.sleep(600)
"""


@pytest.mark.postgres
def test_events_dropped_for_a_full_spool_stay_dropped_after_a_kill(
        tmp_path: Path, database_url: str) -> None:
    """Only the events a full queue dropped were marked so in the journal: those dropped
    for a full spool (or an error, a refusal) came back as audit rows once a kill -9
    left their segment, which spans several batches while the writer is behind."""
    prefix = f"4QD{time.monotonic_ns() % 10**8}X"
    env = _env(tmp_path, database_url=database_url, spool_full_action="drop")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    spooled = make_event(queue_id=f"{prefix}spooled")  # a backlog: the spool is full
    AuditSpool(spool_dir, SpoolBudget(10**9)).append([spooled])
    events = [make_event(queue_id=f"{prefix}{n:04d}")
              for n in range(audit_pipeline.BATCH_SIZE + 2)]
    dead = subprocess.Popen(
        [sys.executable, "-c", _DROPPED_THEN_KILLED, str(spool_dir),
         f"postgresql://postwarden@127.0.0.1:{free_port()}/postwarden"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert dead.stdin is not None and dead.stdout is not None
    with dead.stdin:
        dead.stdin.write("".join(event.to_json() + "\n" for event in events).encode())
    with dead.stdout:
        try:
            assert dead.stdout.readline() == f"{float(len(events) - 2)}\n".encode()
        finally:
            dead.kill()
            dead.wait(10)
    kept = [event.queue_id for event in events[-2:]]

    def stored() -> list[str]:
        return asyncio.run(_queue_ids(database_url, prefix))

    with _serving(env, tmp_path / "restarted.log") as restarted:
        assert wait_until(lambda: kept[-1] in stored(), timeout=30), (
            (tmp_path / "restarted.log").read_text())
        _stop(restarted)
    assert stored() == [*kept, spooled.queue_id]
    assert _segments(spool_dir) == []


# The rows of a test's queue ids hold the writer's insert until the test releases each:
# a PostgreSQL slow to take a batch, longer than a stop waits for the writer.
_HOLD = """
CREATE TABLE audit_hold_released (queue_id text);
CREATE FUNCTION audit_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WHILE NEW.queue_id LIKE '{prefix}%' AND NOT EXISTS (
            SELECT FROM audit_hold_released WHERE queue_id = NEW.queue_id) LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_hold BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_hold();
"""
_UNHOLD = """
DROP TRIGGER audit_hold ON audit_events;
DROP FUNCTION audit_hold();
DROP TABLE audit_hold_released;
"""


async def _execute(dsn: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def _release(dsn: str, queue_id: str) -> None:
    asyncio.run(_execute(dsn, "INSERT INTO audit_hold_released VALUES ($1)", queue_id))


async def _holding(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
            "AND datname = current_database()"))
    finally:
        await conn.close()


def _journaled(directory: Path, dsn: str | None) -> AuditPipeline:
    return AuditPipeline(dsn, AuditSpool(directory, SpoolBudget(10**9)), Metrics(),
                         queue_size=100, spool_full_action=SpoolFullAction.TEMPFAIL,
                         journal=AuditJournal(directory))


@pytest.mark.postgres
def test_a_batch_a_stop_cuts_mid_write_during_a_replay_stays_in_the_journal(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM while PostgreSQL takes longer than the stop waits: the event loop's end
    cancels the writer. A batch of new mail it was writing between a replay's batches
    was settled all the same, its journal segment deleted: neither stored nor spooled."""
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 600.0)  # held, not timed out
    prefix = f"4QH{time.monotonic_ns() % 10**8}X"
    backlog, held = make_event(queue_id=f"{prefix}0"), make_event(queue_id=f"{prefix}1")
    AuditSpool(tmp_path, SpoolBudget(10**9)).append([backlog])

    def stored() -> list[str]:
        return asyncio.run(_queue_ids(database_url, prefix))

    asyncio.run(_execute(database_url, _HOLD.format(prefix=prefix)))
    try:
        loop = LoopThread()
        loop.start()
        pipeline = _journaled(tmp_path, database_url)
        pipeline.start(loop)
        assert wait_until(lambda: asyncio.run(_holding(database_url)), timeout=30)
        pipeline.submit(held)  # while the replay writes the backlog
        _release(database_url, backlog.queue_id)
        assert wait_until(lambda: stored() == [backlog.queue_id]
                          and asyncio.run(_holding(database_url)), timeout=30)
        pipeline.stop(timeout=0.1)
        loop.stop()
    finally:
        _release(database_url, held.queue_id)
        asyncio.run(_execute(database_url, _UNHOLD))
    assert _segments(tmp_path) == ["audit-journal-0-0.jsonl"]
    # Not the queue's count: the batch being written was out of it.
    assert "audit writer did not drain within 0 s; 1 events left in the journal" in caplog.text
    loop = LoopThread()
    loop.start()
    successor = _journaled(tmp_path, database_url)
    successor.start(loop)
    try:
        assert wait_until(lambda: stored() == [backlog.queue_id, held.queue_id], timeout=30)
    finally:
        successor.stop()
        loop.stop()
