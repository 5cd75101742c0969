"""No sender can stop the milter's audit writes: not with a Message-ID too long for
an index, nor with events too heavy to write in time; and a database that takes
connections but no writes is retried ever more slowly, not twice a second."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from postwarden_milter import audit_pipeline
from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.journal import AuditJournal
from postwarden_milter.logcontext import MessageContextFilter
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import DROP_REASONS, Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget
from postwarden_store import audit as store_audit
from postwarden_store import connect
from tests.conftest import PgServer
from tests.fixtures.dbrelay import Relay, relayed
from tests.fixtures.postgres import durable_commits_hang, wait_until
from tests.store.test_audit import _pipeline, _running, make_event

pytestmark = pytest.mark.postgres


def _row(dsn: str, event_id: str) -> asyncpg.Record | None:
    async def fetch() -> asyncpg.Record | None:
        conn = await connect(dsn)
        try:
            return await conn.fetchrow("SELECT * FROM audit_events WHERE event_id = $1",
                                       uuid.UUID(event_id))
        finally:
            await conn.close()
    return asyncio.run(fetch())


def _stored(dsn: str, *events: Any) -> bool:
    return all(_row(dsn, event.event_id) is not None for event in events)


def _names_the_message(caplog: pytest.LogCaptureFixture, text: str, event: Any) -> bool:
    """The line holding ``text`` carries the event's queue id and uid, as the message's
    own lines do: the event id is in no other line, nor in the database."""
    return any(text in record.getMessage() and (record.queue_id, record.uid)
               == (event.queue_id, event.message_uid) for record in caplog.records)


def _dropped(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("postwarden_audit_dropped_total",
                                             {"reason": reason})


@contextmanager
def _session(dsn: str) -> Iterator[Callable[..., Any]]:
    """A connection of the test's own, kept open (to hold locks) on a loop thread."""
    loop = LoopThread("test-session")
    loop.start()
    conn = loop.submit(connect(dsn)).result(10)
    try:
        yield lambda query, *args: loop.submit(conn.execute(query, *args)).result(30)
    finally:
        loop.submit(conn.close()).result(10)
        loop.stop()


def test_a_long_random_message_id_is_stored_cut_and_flagged_and_nothing_waits(
    database_url: str, tmp_path: Path
) -> None:
    metrics = Metrics()
    long_id = "<" + secrets.token_urlsafe(7500) + "@attacker.example>"  # 10 KB
    before, bad, after = make_event(), make_event(message_id=long_id), make_event()
    with _running(database_url, tmp_path, metrics) as pipeline:
        for event in (before, bad, after):
            pipeline.submit(event)
        assert wait_until(lambda: _stored(database_url, before, bad, after), timeout=15)
    row = _row(database_url, bad.event_id)
    assert row is not None
    assert "truncated" in row["flags"]
    assert len(row["message_id"]) <= store_audit.TEXT_MAX
    assert long_id.startswith(row["message_id"][:-1])
    assert not (tmp_path / "audit-spool.jsonl").exists()  # no outage, nothing spooled


def test_an_event_refused_as_too_big_for_an_index_is_dropped_alone(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The bound lifted, as for an index a later migration might add: Postgres refuses
    # the row with 54000 (program_limit_exceeded).
    monkeypatch.setattr(store_audit, "TEXT_MAX", 10**6)
    monkeypatch.setattr(store_audit, "TEXT_MAX_BYTES", 10**6)
    caplog.handler.addFilter(MessageContextFilter())
    metrics = Metrics()
    marker = secrets.token_urlsafe(7500)
    bad, good = make_event(message_id=f"<{marker}@x>"), [make_event() for _ in range(3)]
    with _running(database_url, tmp_path, metrics) as pipeline:
        for event in (good[0], bad, good[1]):
            pipeline.submit(event)
        assert wait_until(lambda: _stored(database_url, *good[:2]), timeout=15)
        pipeline.submit(good[2])  # nothing is held back behind it
        assert wait_until(lambda: _stored(database_url, good[2]), timeout=15)
    assert _row(database_url, bad.event_id) is None
    assert _dropped(metrics, "unstorable") == 1
    assert _names_the_message(caplog, f"audit event {bad.event_id} refused by Postgres", bad)
    assert marker not in caplog.text
    assert not (tmp_path / "audit-spool.jsonl").exists()


SLOW_KEY = 7311  # the advisory lock the slow event's insert waits for


@contextmanager
def _before_insert(run: Callable[..., Any], message_id: str, body: str) -> Iterator[None]:
    """Meanwhile ``body`` (PL/pgSQL) runs before the insert of an event with
    ``message_id``; the other events are written as ever."""
    run(f"""
        CREATE FUNCTION audit_test_hook() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {body}
            RETURN NEW;
        END $$;
        CREATE TRIGGER audit_test_hook BEFORE INSERT ON audit_events FOR EACH ROW
            WHEN (NEW.message_id = '{message_id}') EXECUTE FUNCTION audit_test_hook();
    """)
    try:
        yield
    finally:
        run("DROP TRIGGER audit_test_hook ON audit_events; DROP FUNCTION audit_test_hook()")


@contextmanager
def _slow_inserts(dsn: str, message_id: str) -> Iterator[Callable[[], None]]:
    """Meanwhile the insert of an event with ``message_id`` waits for a lock the test
    holds (``lock_timeout`` off for that wait), until its write is cancelled. Yields a
    function that lets it through."""
    with _session(dsn) as run, _before_insert(run, message_id, f"""
            PERFORM set_config('lock_timeout', '0', true);
            PERFORM pg_advisory_xact_lock_shared({SLOW_KEY});"""):
        run("SELECT pg_advisory_lock($1)", SLOW_KEY)
        try:
            yield lambda: run("SELECT pg_advisory_unlock($1)", SLOW_KEY)
        finally:
            run("SELECT pg_advisory_unlock_all()")


def test_a_batch_not_written_in_time_is_split_and_a_lone_slow_event_dropped_at_last(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    caplog.handler.addFilter(MessageContextFilter())
    metrics = Metrics()
    slow = make_event(message_id=f"<slow-{uuid.uuid4().hex}@wedge.test>")
    first, last = make_event(), make_event()
    with _slow_inserts(database_url, str(slow.message_id)), \
            _running(database_url, tmp_path, metrics) as pipeline:
        for event in (first, slow, last):  # one batch, most likely
            pipeline.submit(event)
        assert wait_until(lambda: _stored(database_url, first), timeout=15)
        # Tried alone SLOW_EVENT_ATTEMPTS times (spooled and replayed in between), then
        # dropped: the event behind it is written.
        assert wait_until(lambda: _stored(database_url, last), timeout=60)
        assert wait_until(lambda: (tmp_path / "audit-spool.jsonl").stat().st_size == 0,
                          timeout=15)
    assert _row(database_url, slow.event_id) is None
    assert _dropped(metrics, "timeout") == 1
    assert _names_the_message(caplog, f"AUDIT EVENT {slow.event_id} DROPPED", slow)


def test_a_lone_event_written_in_time_at_a_later_attempt_is_kept(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    metrics = Metrics()
    slow = make_event(message_id=f"<slow-{uuid.uuid4().hex}@wedge.test>")
    spooled = tmp_path / "audit-spool.jsonl"
    with _slow_inserts(database_url, str(slow.message_id)) as let_through, \
            _running(database_url, tmp_path, metrics) as pipeline:
        pipeline.submit(slow)
        assert wait_until(lambda: spooled.exists() and spooled.stat().st_size > 0, timeout=15)
        let_through()  # the database's slow moment is over
        assert wait_until(lambda: _stored(database_url, slow), timeout=30)
    assert _dropped(metrics, "timeout") == 0


@contextmanager
def _commits_hang(admin_dsn: str) -> Iterator[None]:
    """durable_commits_hang, from a thread of its own."""
    loop = LoopThread("test-hang")
    loop.start()
    hang = durable_commits_hang(admin_dsn)
    loop.submit(hang.__aenter__()).result(30)
    try:
        yield
    finally:
        loop.submit(hang.__aexit__(None, None, None)).result(30)
        loop.stop()


@contextmanager
def _durable_commits(dsn: str) -> Iterator[None]:
    """Meanwhile the database's commits wait for durability (synchronous_commit on; the
    tests' is off), the probe's too: durable_commits_hang holds them all."""
    database = urlsplit(dsn).path.lstrip("/")
    with _session(dsn) as run:
        run(f'ALTER DATABASE "{database}" SET synchronous_commit = on')
        try:
            yield
        finally:
            run(f'ALTER DATABASE "{database}" RESET synchronous_commit')


@contextmanager
def _dropping_on_a_full_spool(database_url: str, tmp_path: Path, metrics: Metrics,
                              **options: Any) -> Iterator[tuple[AuditPipeline, AuditJournal]]:
    """A started pipeline with its journal under ``drop``, the spools full (another
    worker's, here), its database's commits durable (:func:`_durable_commits`); stopped
    on leaving."""
    budget = SpoolBudget(1, slots=2)
    budget.record(1, 10)  # the other worker's spool: the budget is reached
    journal = AuditJournal(tmp_path)
    pipeline = AuditPipeline(database_url, AuditSpool(tmp_path, budget), metrics,
                             spool_full_action=SpoolFullAction.DROP, journal=journal,
                             **options)
    loop = LoopThread()
    loop.start()
    with _durable_commits(database_url):
        try:
            pipeline.start(loop)
            yield pipeline, journal
        finally:
            pipeline.stop()
            loop.stop()


def test_a_database_that_cannot_commit_is_an_outage_and_no_event_is_blamed(
    database_url: str, pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reads answer, commits hang (a disk stall, a synchronous standby away): each write
    times out alone, yet the event is not dropped as too slow."""
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    metrics = Metrics()
    event = make_event()
    with _durable_commits(database_url), _running(database_url, tmp_path, metrics) as pipeline:
        with _commits_hang(pg_server.admin_dsn):
            pipeline.submit(event)
            assert wait_until(lambda: caplog.text.count("audit database unavailable")
                              > audit_pipeline.SLOW_EVENT_ATTEMPTS, timeout=60)
        assert wait_until(
            lambda: (tmp_path / "audit-spool.jsonl").stat().st_size == 0, timeout=30)
    assert _stored(database_url, event)
    assert _dropped(metrics, "timeout") == 0


def test_an_event_whose_commit_stood_unanswered_is_counted_written_once_replayed(
    database_url: str, pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Commits hang (a synchronous standby away): the write gets no answer, yet its
    commit stands once cancelled, and the probe gets none either (an outage): the event
    is spooled. Its replay, once Postgres commits again, found it stored (ON CONFLICT)
    and counted it nowhere: postwarden_audit_written_total fell short of the events
    stored. It is now counted written, once."""
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    metrics = Metrics()
    event = make_event()
    with _durable_commits(database_url), _running(database_url, tmp_path, metrics) as pipeline:
        with _commits_hang(pg_server.admin_dsn):
            pipeline.submit(event)
            assert wait_until(lambda: metrics.registry.get_sample_value(
                "postwarden_audit_spooled_total") == 1, timeout=30)
        assert wait_until(
            lambda: (tmp_path / "audit-spool.jsonl").stat().st_size == 0, timeout=30)
    assert _stored(database_url, event)
    assert metrics.registry.get_sample_value("postwarden_audit_written_total") == 1


def test_an_event_whose_commit_got_no_answer_is_not_dropped_for_a_full_spool(
    database_url: str, pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Commits hang (a synchronous standby away) and the spools are full (another
    worker's, here) under ``drop``: the write got no answer, yet its commit stands once
    cancelled. It was counted dropped though stored. It now stays in the journal, is
    written again once Postgres answers (stored once) and settled."""
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    metrics = Metrics()
    event = make_event()
    with _dropping_on_a_full_spool(database_url, tmp_path, metrics,
                                   queue_size=100) as (pipeline, journal):
        with _commits_hang(pg_server.admin_dsn):
            pipeline.submit(event)
            assert wait_until(lambda: "audit database unavailable" in caplog.text, timeout=30)
        assert wait_until(lambda: journal.unsettled == 0, timeout=30)
    assert _stored(database_url, event)
    assert not any(_dropped(metrics, reason) for reason in DROP_REASONS)


def test_events_that_may_be_stored_are_kept_for_a_full_spool_up_to_the_queue_size(
    database_url: str, pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Commits hang and the spools are full under ``drop``: the events whose write got
    no answer are kept (the test above), and written again at each reconnect. While the
    database takes connections but no writes, each new batch was kept too, without a
    bound (in memory). At most audit_queue_size are kept now (1 here): the one past it
    is dropped, counted and said. The writer's clock runs a thousand times fast: it
    reconnects at once."""
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    metrics = Metrics()
    first, second = make_event(), make_event()
    with _dropping_on_a_full_spool(database_url, tmp_path, metrics, queue_size=1,
                                   clock=lambda: time.monotonic() * 1000) as (pipeline, journal):
        with _commits_hang(pg_server.admin_dsn):
            pipeline.submit(first)
            assert wait_until(lambda: "kept in the audit journal until" in caplog.text,
                              timeout=30)
            pipeline.submit(second)
            assert wait_until(lambda: _dropped(metrics, "spool_full") == 1, timeout=30)
            assert "1 events that may be stored (a write got no answer) are kept" in caplog.text
        assert wait_until(lambda: journal.unsettled == 0, timeout=30)
    assert _stored(database_url, first)


def test_a_lone_event_whose_commit_stood_after_its_timeout_is_stored_not_dropped(
    database_url: str, pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The write times out while its commit waits (for a synchronous standby here, a
    slow disk elsewhere), and the cancel comes too late: the commit stands. Its last
    attempt (the first, here), yet it is stored: written, not dropped."""
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    monkeypatch.setattr(audit_pipeline, "SLOW_EVENT_ATTEMPTS", 1)
    metrics = Metrics()
    late = make_event(message_id=f"<late-{uuid.uuid4().hex}@wedge.test>")
    # Only its commit waits for the standby: the probe's, with the tests' setting, does not.
    waits = "PERFORM set_config('synchronous_commit', 'on', true);"
    with _session(database_url) as run, _before_insert(run, str(late.message_id), waits), \
            _commits_hang(pg_server.admin_dsn), \
            _running(database_url, tmp_path, metrics) as pipeline:
        pipeline.submit(late)
        assert wait_until(lambda: _stored(database_url, late), timeout=30)
    assert _dropped(metrics, "timeout") == 0
    assert metrics.registry.get_sample_value("postwarden_audit_written_total") == 1
    assert "DROPPED" not in caplog.text
    assert not (tmp_path / "audit-spool.jsonl").exists()  # nothing to retry


@contextmanager
def relayed_on(loop: LoopThread, dsn: str) -> Iterator[tuple[Relay, str]]:
    """dbrelay.relayed, served by ``loop``: the relay and a URL through it."""
    relaying = relayed(dsn)
    relay, through = loop.submit(relaying.__aenter__()).result(10)
    try:
        yield relay, through
    finally:
        loop.submit(relaying.__aexit__(None, None, None)).result(30)


def test_a_database_frozen_as_a_timed_out_batch_is_counted_holds_the_writer_no_longer(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a write timed out while Postgres committed a probe, the writer counts the
    batch's events stored (_committed_late). A database that froze then (a partition, a
    server stopped) held the writer WRITE_TIMEOUT more once the count gave up: the count's
    connection, released, waited for asyncpg's cancel of it, which a frozen server never
    acknowledges. The connection now ends with the count, and the batch is spooled. Here
    the count's own bound is short, the release's endless (WRITE_TIMEOUT once the probe
    committed), to tell the waits apart; the writer's clock stands still (no reconnect)."""
    monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 1.0)
    probe = AuditPipeline._probe

    async def then_endless(pipeline: AuditPipeline) -> None:
        await probe(pipeline)
        monkeypatch.setattr(audit_pipeline, "WRITE_TIMEOUT", 3600.0)

    monkeypatch.setattr(AuditPipeline, "_probe", then_endless)
    metrics = Metrics()
    slow = make_event(message_id=f"<slow-{uuid.uuid4().hex}@wedge.test>")
    loop = LoopThread()
    loop.start()
    try:
        with _slow_inserts(database_url, str(slow.message_id)), \
                relayed_on(loop, database_url) as (relay, through):

            async def frozen_count(conn: asyncpg.Connection, events: list[Any]) -> int:
                relay.freeze()
                return await asyncio.wait_for(store_audit.count_stored(conn, events), 1.0)

            monkeypatch.setattr(audit_pipeline, "count_stored", frozen_count)
            pipeline = AuditPipeline(through, AuditSpool(tmp_path, SpoolBudget(10**9)),
                                     metrics, queue_size=10,
                                     spool_full_action=SpoolFullAction.TEMPFAIL,
                                     clock=lambda: 0.0)
            pipeline.start(loop)
            try:
                pipeline.submit(slow)
                assert wait_until(lambda: metrics.registry.get_sample_value(
                    "postwarden_audit_spooled_total") == 1, timeout=30)
            finally:
                pipeline.stop(5.0)
    finally:
        loop.stop()


RETRY = re.compile(r"audit database unavailable \((\w+)\); spooling, retry in ([\d.]+) s")


def test_the_retry_delay_grows_while_writes_keep_failing_after_each_connect(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    when = dt.datetime(2030, 7, 15, tzinfo=dt.UTC)
    event = make_event(when)

    def delays() -> list[float]:
        return [float(m[2]) for m in RETRY.finditer(caplog.text) if m[1] == "LockNotAvailableError"]

    with _session(database_url) as run, _running(database_url, tmp_path, Metrics()) as pipeline:
        run("SELECT audit_ensure_partition($1)", when)
        run("BEGIN")
        # Every write of the month now waits for this lock, and gives up at lock_timeout.
        run("LOCK TABLE audit_events_203007 IN ACCESS EXCLUSIVE MODE")
        try:
            pipeline.submit(event)
            assert wait_until(lambda: len(delays()) >= 3, timeout=30)
        finally:
            run("ROLLBACK")
        assert wait_until(lambda: _stored(database_url, event), timeout=30)
    assert delays()[:3] == [0.5, 1.0, 2.0]


def test_a_lock_on_schema_migrations_while_the_writer_connects_holds_no_event_back(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock held on schema_migrations (a DDL on it, VACUUM FULL) held the writer's
    check of the schema for as long: nothing was written or spooled, the queue filled
    and dropped events. The events are now spooled meanwhile, and stored once it is
    released."""
    monkeypatch.setattr(audit_pipeline, "CONNECT_TIMEOUT", 1.0)
    metrics = Metrics()
    events = [make_event() for _ in range(3)]
    with _session(database_url) as run:
        run("BEGIN")
        run("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")  # as a DDL's
        with _running(database_url, tmp_path, metrics) as pipeline:
            try:
                for event in events:
                    pipeline.submit(event)
                assert wait_until(lambda: metrics.registry.get_sample_value(
                    "postwarden_audit_spooled_total") == len(events), timeout=30)
            finally:
                run("ROLLBACK")
            assert wait_until(lambda: _stored(database_url, *events), timeout=30)
    assert not any(_dropped(metrics, reason) for reason in DROP_REASONS)


SAME_LENGTH = dt.datetime(2031, 2, 3, 4, 5, 6, 789, tzinfo=dt.UTC)  # in JSON: microseconds


def _batches_written(dsn: str, events: list[Any]) -> int:
    """How many transactions wrote these events (one per batch)."""
    async def count() -> int:
        conn = await connect(dsn)
        try:
            return int(await conn.fetchval(
                "SELECT count(DISTINCT xmin::text) FROM audit_events WHERE event_id = ANY($1)",
                [uuid.UUID(event.event_id) for event in events]))
        finally:
            await conn.close()
    return asyncio.run(count())


def test_batches_are_capped_in_bytes_as_well_as_in_events(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [make_event(SAME_LENGTH) for _ in range(6)]  # the same weight each
    monkeypatch.setattr(audit_pipeline, "BATCH_BYTES", 2 * store_audit.weight(events[0]))
    loop = LoopThread()
    loop.start()
    pipeline = _pipeline(database_url, tmp_path, Metrics())
    for event in events:  # all queued before the writer starts: its first batch could take all
        pipeline.submit(event)
    pipeline.start(loop)
    try:
        assert wait_until(lambda: _stored(database_url, *events), timeout=15)
    finally:
        pipeline.stop()
        loop.stop()
    assert _batches_written(database_url, events) == 3


def test_spool_replay_is_cut_into_batches_by_bytes(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    events = [make_event(SAME_LENGTH) for _ in range(7)]
    spool.append(events)
    line = len(events[0].to_json()) + 1
    batches = list(spool.batches(500, max_bytes=3 * line))
    assert [len(batch) for batch, _ in batches] == [3, 3, 1]
    assert [event for batch, _ in batches for event in batch] == events
    assert [offset for _, offset in batches] == [3 * line, 6 * line, 7 * line]
    # A line past the cap alone still makes a batch.
    assert [len(batch) for batch, _ in spool.batches(500, max_bytes=1)] == [1] * 7
