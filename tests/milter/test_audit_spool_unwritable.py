"""The audit writer as an admin meets it in an outage of Postgres: with a spool that
takes no more events (its filesystem full or read-only) it is a full backlog
(`spool_full_action: tempfail` refuses new mail rather than pass it with no audit
row, until Postgres takes events), and the log says so in the milter's own lines."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from postwarden_milter.audit_pipeline import FLUSH_SECONDS, AuditPipeline
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget, spool_name
from tests.fixtures.postgres import PostgresCluster, wait_until
from tests.fixtures.smallfs import fill, small_filesystem
from tests.milter.test_audit_wedges import _stored
from tests.store.test_audit import UNREACHABLE, _running, make_event, own_cluster

__all__ = ["own_cluster"]  # the fixture, imported for this module's test

pytestmark = pytest.mark.postgres


def test_a_spool_on_a_full_filesystem_tempfails_new_mail_until_postgres_is_back(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path
) -> None:
    cluster, dsn = own_cluster
    metrics = Metrics()
    cluster.stop()
    with small_filesystem(tmp_path / "spool") as spool_dir, \
            _running(dsn, spool_dir, metrics) as pipeline:
        fill(spool_dir)
        try:
            assert not pipeline.refusing_mail
            pipeline.submit(make_event())
            assert wait_until(lambda: pipeline.refusing_mail, timeout=10)
        finally:
            cluster.start()
        # Events go to Postgres again (the retry delay is short after one failure).
        assert wait_until(lambda: not pipeline.refusing_mail, timeout=15)
    assert metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "spool_error"}) == 1


def test_a_spool_one_worker_cannot_append_to_tempfails_every_workers_mail(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path
) -> None:
    """`processes: 2`: the workers' spools share spool_dir, full for both. The worker that
    has no mail when the other finds it full went on accepting mail, and lost the audit
    event of the first message it took (its own append failing too), before refusing."""
    cluster, dsn = own_cluster
    spool_dir = tmp_path / "spool"
    with small_filesystem(spool_dir):
        fill(spool_dir)
        _two_workers(cluster, dsn, spool_dir)


def _two_workers(cluster: PostgresCluster, dsn: str, spool_dir: Path) -> None:
    budget = SpoolBudget(10**9, 2)  # as the supervisor makes it before forking the workers
    loop = LoopThread()
    loop.start()
    busy, idle = (AuditPipeline(dsn, AuditSpool(spool_dir, budget, worker), Metrics(),
                                queue_size=100, spool_full_action=SpoolFullAction.TEMPFAIL)
                  for worker in (0, 1))
    cluster.stop()
    try:
        for pipeline in (busy, idle):
            pipeline.start(loop)
        busy.submit(make_event())
        assert wait_until(lambda: busy.refusing_mail, timeout=10)
        assert idle.refusing_mail
        cluster.start()
        # Either worker's writer ends the refusal once Postgres takes events again.
        assert wait_until(lambda: not (busy.refusing_mail or idle.refusing_mail), timeout=15)
    finally:
        if not cluster.is_running():
            cluster.start()
        for pipeline in (busy, idle):
            pipeline.stop()
        loop.stop()


def test_postgres_going_away_while_idle_logs_no_traceback(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit writer's pool keeps no floor of connections that asyncpg would
    reconnect by itself, a traceback in the milter's log every few seconds of an outage."""
    cluster, dsn = own_cluster
    event = make_event()
    with _running(dsn, tmp_path, Metrics()) as pipeline:
        pipeline.submit(event)
        assert wait_until(lambda: _stored(dsn, event), timeout=10)
        cluster.stop()
        try:
            time.sleep(2.5)  # asyncpg retries its floor after 1 s, then 2 s
        finally:
            cluster.start()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncpg")] == []


def test_refusing_ends_once_postgres_is_back_under_steady_mail(
    own_cluster: tuple[PostgresCluster, str], tmp_path: Path,
) -> None:
    """Mail that never pauses keeps the writer from its idle replay: the refusal ended
    only there, so mail stayed refused while Postgres took every event again."""
    cluster, dsn = own_cluster
    cluster.stop()
    with small_filesystem(tmp_path / "spool") as spool_dir, \
            _running(dsn, spool_dir, Metrics()) as pipeline:
        fill(spool_dir)
        try:
            pipeline.submit(make_event())
            assert wait_until(lambda: pipeline.refusing_mail, timeout=10)
        finally:
            cluster.start()
        last = None
        deadline = time.monotonic() + 15
        while pipeline.refusing_mail and time.monotonic() < deadline:
            last = make_event()  # each refused transaction is audited too
            pipeline.submit(last)
            time.sleep(FLUSH_SECONDS / 2)
        assert not pipeline.refusing_mail
        assert last is not None and wait_until(lambda: _stored(dsn, last), timeout=10)


def test_without_a_database_a_full_audit_log_tempfails_new_mail_until_it_has_room(
    tmp_path: Path,
) -> None:
    """The spool is the audit log: a full filesystem lost every event after it, while
    `spool_full_action: tempfail` (the default) went on accepting the mail."""
    with small_filesystem(tmp_path / "spool") as spool_dir:
        with _running(None, spool_dir, Metrics()) as pipeline:
            filler = fill(spool_dir)
            pipeline.submit(make_event())
            assert wait_until(lambda: pipeline.refusing_mail, timeout=10)
            filler.unlink()  # the admin makes room
            assert wait_until(lambda: not pipeline.refusing_mail, timeout=10)
            logged = make_event()
            pipeline.submit(logged)
        assert logged.event_id in (spool_dir / spool_name(0)).read_text()


def test_a_spool_it_cannot_even_look_at_ends_no_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The idle writer reads the spool's size: an error there other than a missing file
    (EACCES, spool_dir's permissions changed; EIO, a failing disk; here ELOOP, which a
    test run as root can make) ended the writer, unsaid, every event after it lost, and
    the stop raised it."""
    metrics = Metrics()
    path = tmp_path / spool_name(0)
    with _running(None, tmp_path, metrics) as pipeline:
        path.symlink_to(path.name)  # a loop: stat and open fail
        assert wait_until(lambda: "cannot read the audit spool" in caplog.text, timeout=10)
        path.unlink()
        logged = make_event()
        pipeline.submit(logged)
        assert wait_until(lambda: path.exists() and logged.event_id in path.read_text(),
                          timeout=10)
    assert metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "audit_spool"}) >= 1


def test_an_unexpected_error_ends_no_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any other (a bug) is counted and said with its traceback, and the writer goes on."""
    metrics = Metrics()
    with _running(None, tmp_path, metrics) as pipeline:

        def bug() -> None:
            monkeypatch.delattr(pipeline, "_adopt_leftover")  # once
            raise KeyError("bug")

        monkeypatch.setattr(pipeline, "_adopt_leftover", bug)
        assert wait_until(lambda: "audit writer: unexpected error" in caplog.text, timeout=10)
        logged = make_event()
        pipeline.submit(logged)
        path = tmp_path / spool_name(0)
        assert wait_until(lambda: path.exists() and logged.event_id in path.read_text(),
                          timeout=10)
    assert metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "audit_writer"}) == 1


def test_the_metrics_are_served_while_the_spool_cannot_be_looked_at(tmp_path: Path) -> None:
    """The spool's gauges read its size: an error there (as above) failed every scrape,
    every metric unseen while the spool needed watching; they are NaN now."""
    metrics = Metrics()
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    AuditPipeline(UNREACHABLE, spool, metrics, queue_size=10,
                  spool_full_action=SpoolFullAction.TEMPFAIL)
    spool.path.symlink_to(spool.path.name)
    for gauge in ("postwarden_audit_spool_bytes", "postwarden_audit_spool_pending_bytes"):
        assert math.isnan(metrics.registry.get_sample_value(gauge))
    assert metrics.registry.get_sample_value("postwarden_audit_queue_depth") == 0
