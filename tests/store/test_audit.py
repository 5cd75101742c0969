"""Audit writes and the milter's audit pipeline against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
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
from postwarden_store import connect, migrate_database, write_audit_batch
from postwarden_store.audit import Written
from tests.fixtures.postgres import PostgresCluster, create_database, wait_until

pytestmark = pytest.mark.postgres


def make_event(when: dt.datetime | None = None, **overrides: object) -> AuditEvent:
    values: dict[str, object] = {
        "event_id": uuid.uuid4().hex,
        "time": when or dt.datetime.now(dt.UTC),
        "instance": "mx1",
        "queue_id": "4AbCdEf",
        "message_uid": uuid.uuid4().hex,
        "client_address": "192.0.2.7",
        "client_name": "client.example",
        "helo": "client.example",
        "auth_user": None,
        "sender": "alice@example.org",
        "recipients": ("bob@example.net", "carol@example.net"),
        "header_from": "alice@example.org",
        "message_id": "<m1@example.org>",
        "subject": "Quarterly report",
        "size": 1234,
        "action": "accept",
        "smtp_reply": None,
        "rules": ("strip-exe",),
        "changes": ({"kind": "attachment_stripped", "filename": "a.exe", "size": 10},),
        "policy_hash": "abc123",
        "duration_ms": 3.5,
        "flags": ("duplicate",),
    }
    values.update(overrides)
    return AuditEvent(**values)  # type: ignore[arg-type]


async def _event_ids(dsn: str) -> list[str]:
    conn = await connect(dsn)
    try:
        rows = await conn.fetch("SELECT event_id FROM audit_events")
    finally:
        await conn.close()
    return [row["event_id"].hex for row in rows]


def event_ids(dsn: str) -> list[str]:
    return asyncio.run(_event_ids(dsn))


def own_event_ids(dsn: str, events: list[AuditEvent]) -> list[str]:
    """The stored ids of these events, sorted, once per stored row: the other tests of
    the module write into the same database, so only a test's own events are counted."""
    wanted = {event.event_id for event in events}
    return sorted(event_id for event_id in event_ids(dsn) if event_id in wanted)


async def test_batch_is_written_once_and_replay_is_idempotent(fresh_database_url: str) -> None:
    events = [make_event() for _ in range(3)]
    conn = await connect(fresh_database_url)
    try:
        assert (await write_audit_batch(conn, events)).new == 3
        assert (await write_audit_batch(conn, events)).new == 0
        row = await conn.fetchrow(
            "SELECT * FROM audit_events WHERE event_id = $1", uuid.UUID(events[0].event_id)
        )
    finally:
        await conn.close()
    assert row is not None
    assert str(row["client_address"]) == "192.0.2.7"
    assert row["recipients"] == ["bob@example.net", "carol@example.net"]
    assert row["changes"] == [{"kind": "attachment_stripped", "filename": "a.exe", "size": 10}]
    assert row["rules"] == ["strip-exe"]
    assert row["flags"] == ["duplicate"]
    assert row["time"] == events[0].time


async def test_batch_spanning_months_creates_partitions(fresh_database_url: str) -> None:
    old = dt.datetime(2024, 1, 31, 23, 59, tzinfo=dt.UTC)
    events = [make_event(old), make_event(old + dt.timedelta(minutes=2))]
    conn = await connect(fresh_database_url)
    try:
        assert (await write_audit_batch(conn, events)).new == 2
        partitions = {
            row["relname"]
            for row in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'audit_events'::regclass"
            )
        }
    finally:
        await conn.close()
    assert {"audit_events_202401", "audit_events_202402"} <= partitions


async def test_nul_and_undecodable_bytes_are_stored_replaced(fresh_database_url: str) -> None:
    # A NUL from an encoded word, lone surrogates from raw 8-bit headers: Postgres
    # takes neither, in text columns, arrays or jsonb.
    event = make_event(
        subject="hello\x00world", header_from="jos\udce9@example.org",
        recipients=("b\udcfc@example.net",), message_id="<m\x00@x>",
        changes=({"kind": "attachment_stripped", "filename": "a\x00\udce9.exe", "size": 1},),
    )
    conn = await connect(fresh_database_url)
    try:
        assert (await write_audit_batch(conn, [event])).new == 1
        row = await conn.fetchrow("SELECT * FROM audit_events")
    finally:
        await conn.close()
    assert row is not None
    assert (row["subject"], row["header_from"], row["message_id"]) == (
        "hello\ufffdworld", "jos\ufffd@example.org", "<m\ufffd@x>")
    assert row["recipients"] == ["b\ufffd@example.net"]
    assert row["changes"][0]["filename"] == "a\ufffd\ufffd.exe"


@pytest.mark.parametrize(("given", "stored"), [
    ("fe80::1%eth0", "fe80::1"),  # a zone: Python reads it as an address, inet refuses it
    ("::ffff:192.0.2.7%2", "192.0.2.7"),
    ("not-an-address", None),  # from a spool written by hand, say
    (7, None),
])
async def test_a_client_address_inet_refuses_is_mended_and_the_row_kept(
        fresh_database_url: str, given: object, stored: str | None) -> None:
    events = [make_event(), make_event(client_address=given), make_event()]
    conn = await connect(fresh_database_url)
    try:
        assert (await write_audit_batch(conn, events)).new == 3
        address = await conn.fetchval("SELECT client_address FROM audit_events "
                                      "WHERE event_id = $1", uuid.UUID(events[1].event_id))
    finally:
        await conn.close()
    assert (None if address is None else str(address)) == stored


# --- the pipeline: Postgres going away loses nothing ---------------------------


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[tuple[PostgresCluster, str]]:
    """A cluster this module may stop and start without disturbing other tests."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        name = asyncio.run(create_database(cluster.admin_dsn))
        dsn = cluster.dsn(name)
        asyncio.run(migrate_database(dsn))
        yield cluster, dsn
    finally:
        cluster.destroy()


def _pipeline(dsn: str | None, spool_dir: Path, metrics: Metrics,
              max_bytes: int = 10**9,
              action: SpoolFullAction = SpoolFullAction.TEMPFAIL) -> AuditPipeline:
    return AuditPipeline(dsn, AuditSpool(spool_dir, SpoolBudget(max_bytes)), metrics,
                         queue_size=1000, spool_full_action=action)


@contextmanager
def _running(dsn: str | None, spool_dir: Path, metrics: Metrics,
             **options: Any) -> Iterator[AuditPipeline]:
    """A started pipeline on its own loop thread; drained and stopped on leaving."""
    loop = LoopThread()
    loop.start()
    pipeline = _pipeline(dsn, spool_dir, metrics, **options)
    pipeline.start(loop)
    try:
        yield pipeline
    finally:
        pipeline.stop()
        loop.stop()


def test_postgres_stopped_mid_run_loses_no_event(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path
) -> None:
    cluster, dsn = own_cluster
    metrics = Metrics()
    spool = tmp_path / "audit-spool.jsonl"
    with _running(dsn, tmp_path, metrics) as pipeline:
        try:
            before = [make_event() for _ in range(20)]
            for event in before:
                pipeline.submit(event)
            assert wait_until(lambda: len(own_event_ids(dsn, before)) == 20, timeout=15)

            cluster.stop()
            during = [make_event() for _ in range(30)]
            for event in during:
                pipeline.submit(event)
            assert wait_until(
                lambda: metrics.registry.get_sample_value("postwarden_audit_spooled_total") == 30,
                timeout=30,
            )
            assert len(spool.read_text().splitlines()) == 30

            cluster.start()
            after = [make_event() for _ in range(5)]
            for event in after:
                pipeline.submit(event)
            mine = before + during + after
            expected = sorted(e.event_id for e in mine)
            assert wait_until(lambda: own_event_ids(dsn, mine) == expected, timeout=60)
            assert wait_until(lambda: spool.stat().st_size == 0, timeout=10)
        finally:
            if not cluster.is_running():
                cluster.start()
    assert own_event_ids(dsn, mine) == expected  # exactly once each


def test_replay_of_events_already_stored_writes_no_duplicate(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path
) -> None:
    _cluster, dsn = own_cluster
    event = make_event()
    # A crash after the write but before the spool was cleared leaves the event in both.
    AuditSpool(tmp_path, SpoolBudget(10**9)).append([event, event])
    with _running(dsn, tmp_path, Metrics()):
        assert wait_until(lambda: (tmp_path / "audit-spool.jsonl").stat().st_size == 0,
                          timeout=15)
    assert event_ids(dsn).count(event.event_id) == 1


def test_an_unexpected_write_error_spools_the_batch_and_loses_nothing(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    _cluster, dsn = own_cluster
    calls: list[int] = []

    async def fails_first(conn: Any, batch: list[AuditEvent]) -> Written:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug, not an outage")
        return await write_audit_batch(conn, batch)

    monkeypatch.setattr(audit_pipeline, "write_audit_batch", fails_first)
    events = [make_event() for _ in range(3)]
    with _running(dsn, tmp_path, Metrics()) as pipeline:
        pipeline.submit(events[0])
        assert wait_until(lambda: len(calls) == 1, timeout=15)
        for event in events[1:]:
            pipeline.submit(event)
        stored = {e.event_id for e in events}
        assert wait_until(lambda: stored <= set(event_ids(dsn)), timeout=30)
    assert "audit writer: unexpected error writing to Postgres" in caplog.text
    assert "RuntimeError: a bug, not an outage" in caplog.text  # with its traceback


# Values Postgres refuses that the store does not mend (none a client or Postfix can
# send: from a spool damaged or written by hand, say); the marker must not reach the log.
UNSTORABLE = [
    pytest.param({"changes": ({"kind": "not-an-address-7f3a", "size": float("nan")},)},
                 id="refused-by-postgres"),
    pytest.param({"size": 2**63, "subject": "not-an-address-7f3a"}, id="refused-by-asyncpg"),
]
# And a value of a type its column does not hold, which only a spool's JSON can.
SPOOLED_UNSTORABLE = [*UNSTORABLE, pytest.param(
    {"recipients": (7,), "subject": "not-an-address-7f3a"}, id="of-another-type")]


def _dropped(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "unstorable"})


@pytest.mark.parametrize("poison", UNSTORABLE)
def test_an_event_postgres_refuses_is_dropped_alone_and_the_writer_goes_on(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, poison: dict[str, Any],
) -> None:
    _cluster, dsn = own_cluster
    metrics = Metrics()
    bad, good = make_event(**poison), [make_event() for _ in range(4)]
    with _running(dsn, tmp_path, metrics) as pipeline:
        for event in (good[0], bad, good[1]):  # one batch, most likely
            pipeline.submit(event)
        assert wait_until(lambda: {e.event_id for e in good[:2]} <= set(event_ids(dsn)),
                          timeout=15)
        for event in good[2:]:  # nothing is held back behind it
            pipeline.submit(event)
        assert wait_until(lambda: {e.event_id for e in good} <= set(event_ids(dsn)), timeout=15)
    assert bad.event_id not in event_ids(dsn)
    assert _dropped(metrics) == 1
    assert not (tmp_path / "audit-spool.jsonl").exists()  # no outage, nothing spooled
    assert f"audit event {bad.event_id} refused by Postgres" in caplog.text
    assert "not-an-address-7f3a" not in caplog.text


@pytest.mark.parametrize("poison", SPOOLED_UNSTORABLE)
def test_an_event_postgres_refuses_does_not_wedge_the_spool_replay(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path, poison: dict[str, Any],
) -> None:
    _cluster, dsn = own_cluster
    bad, good = make_event(**poison), [make_event() for _ in range(3)]
    AuditSpool(tmp_path, SpoolBudget(10**9)).append([good[0], bad, good[1]])
    metrics = Metrics()
    with _running(dsn, tmp_path, metrics) as pipeline:
        assert wait_until(lambda: (tmp_path / "audit-spool.jsonl").stat().st_size == 0,
                          timeout=15)
        pipeline.submit(good[2])
        assert wait_until(lambda: {e.event_id for e in good} <= set(event_ids(dsn)), timeout=15)
    assert bad.event_id not in event_ids(dsn)
    assert _dropped(metrics) == 1


def test_a_batch_the_spool_cannot_take_is_counted_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    append = AuditSpool.append
    calls: list[int] = []

    def fails_first(spool: AuditSpool, batch: list[AuditEvent]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise TypeError("a bug in serialising")
        append(spool, batch)

    monkeypatch.setattr(AuditSpool, "append", fails_first)
    metrics = Metrics()
    with _running(None, tmp_path, metrics) as pipeline:
        pipeline.submit(make_event())
        assert wait_until(lambda: len(calls) == 1, timeout=15)
        kept = make_event()
        pipeline.submit(kept)
    assert metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "error"}) == 1
    lines = (tmp_path / "audit-spool.jsonl").read_text().splitlines()
    assert [AuditEvent.from_json(line) for line in lines] == [kept]


def test_without_database_events_go_to_the_spool(tmp_path: Path) -> None:
    with _running(None, tmp_path, Metrics()) as pipeline:
        events = [make_event() for _ in range(7)]
        for event in events:
            pipeline.submit(event)
    # the pipeline drains its queue as the with block ends
    lines = (tmp_path / "audit-spool.jsonl").read_text().splitlines()
    assert [AuditEvent.from_json(line) for line in lines] == events


# Nothing listens on port 1: the database is down, the spool a backlog.
UNREACHABLE = "postgresql://postwarden@127.0.0.1:1/postwarden"


def test_full_spool_drops_and_counts_when_configured(tmp_path: Path) -> None:
    metrics = Metrics()
    with _running(UNREACHABLE, tmp_path, metrics, max_bytes=1,
                  action=SpoolFullAction.DROP) as pipeline:
        pipeline.submit(make_event())
        assert wait_until((tmp_path / "audit-spool.jsonl").exists, timeout=5)
        assert not pipeline.refusing_mail  # drop mode keeps mail flowing
        pipeline.submit(make_event())
    dropped = metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "spool_full"}
    )
    assert dropped == 1
    assert len((tmp_path / "audit-spool.jsonl").read_text().splitlines()) == 1


def test_full_spool_tempfails_new_mail_when_configured(tmp_path: Path) -> None:
    AuditSpool(tmp_path, SpoolBudget(10**9)).append([make_event()])
    pipeline = _pipeline(UNREACHABLE, tmp_path, Metrics(), max_bytes=10)
    assert pipeline.refusing_mail


@pytest.mark.parametrize("action", list(SpoolFullAction))
def test_without_database_the_spool_is_a_log_past_the_cap_and_refuses_nothing(
    tmp_path: Path, action: SpoolFullAction
) -> None:
    """Never drained, it would refuse mail for good once at spool_max_bytes, even rotated."""
    metrics = Metrics()
    log = tmp_path / "audit-spool.jsonl"
    events = [make_event() for _ in range(6)]  # well past 1000 bytes
    with _running(None, tmp_path, metrics, max_bytes=1000, action=action) as pipeline:
        for event in events[:3]:
            pipeline.submit(event)
        assert wait_until(lambda: log.exists() and log.stat().st_size > 1000, timeout=5)
        assert not pipeline.refusing_mail
        log.rename(tmp_path / "audit-1.jsonl")  # rotated
        for event in events[3:]:
            pipeline.submit(event)
    assert not pipeline.refusing_mail
    lines = (tmp_path / "audit-1.jsonl").read_text().splitlines() + log.read_text().splitlines()
    logged = [AuditEvent.from_json(line) for line in lines]
    assert logged == events
    assert metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "spool_full"}) == 0
    assert metrics.registry.get_sample_value("postwarden_audit_spool_bytes") == log.stat().st_size


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    metrics = Metrics()
    pipeline = AuditPipeline(None, AuditSpool(tmp_path, SpoolBudget(10**9)), metrics, queue_size=2,
                             spool_full_action=SpoolFullAction.TEMPFAIL)
    # Not started: nothing drains the queue, as with a stuck writer.
    for _ in range(5):
        pipeline.submit(make_event())  # returns at once even when full
    assert metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "queue_full"}) == 3
    assert metrics.registry.get_sample_value("postwarden_audit_queue_depth") == 2
