"""A spool replayed after the audit retention dropped its events' month: those
events are counted as expired and not written, and the month stays dropped."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from postwarden_milter.metrics import Metrics
from postwarden_milter.spool import AuditSpool, SpoolBudget
from postwarden_store import connect
from tests.fixtures.postgres import wait_until
from tests.store.test_audit import _running, event_ids, make_event

pytestmark = pytest.mark.postgres

OLD = dt.datetime(2020, 3, 10, tzinfo=dt.UTC)


async def _drop_and_check(dsn: str, cutoff: dt.datetime | None) -> bool:
    """Run retention's drop up to ``cutoff`` (if given); whether March 2020 exists."""
    conn = await connect(dsn)
    try:
        if cutoff is not None:
            await conn.fetch("SELECT audit_drop_partitions_before($1)", cutoff)
        return bool(await conn.fetchval("SELECT to_regclass('audit_events_202003') IS NOT NULL"))
    finally:
        await conn.close()


def test_replayed_events_older_than_retention_are_counted_not_written(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = make_event(OLD), make_event()
    asyncio.run(_drop_and_check(database_url, dt.datetime(2020, 4, 15, tzinfo=dt.UTC)))
    # spooled while Postgres was away; retention ran meanwhile
    AuditSpool(tmp_path, SpoolBudget(10**9)).append([old, new])
    metrics = Metrics()
    with _running(database_url, tmp_path, metrics):
        assert wait_until(lambda: (tmp_path / "audit-spool.jsonl").stat().st_size == 0,
                          timeout=15)
    stored = event_ids(database_url)
    assert new.event_id in stored and old.event_id not in stored
    assert not asyncio.run(_drop_and_check(database_url, None))
    sample = metrics.registry.get_sample_value
    assert sample("postwarden_audit_dropped_total", {"reason": "expired"}) == 1
    assert sample("postwarden_audit_written_total") == 1
    assert "1 audit events older than the audit retention not written" in caplog.text


def test_a_notify_naming_no_endpoint_is_logged_and_counted(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A rule's notify naming an endpoint that does not exist (never made, renamed) sent
    nothing, and nothing said so."""
    asyncio.run(_add_endpoint(database_url, "ops"))
    events = [make_event(notify=("ops", "sec-team")), make_event(notify=("sec-team",)),
              make_event()]
    metrics = Metrics()
    with _running(database_url, tmp_path, metrics) as pipeline:
        for event in events:
            pipeline.submit(event)
        assert wait_until(lambda: metrics.registry.get_sample_value(
            "postwarden_audit_written_total") == 3, timeout=15)
    sample = metrics.registry.get_sample_value
    assert sample("postwarden_notify_endpoint_missing_total", {"endpoint": "sec-team"}) == 2
    assert sample("postwarden_notify_endpoint_missing_total", {"endpoint": "ops"}) is None
    assert "audit events notify webhook endpoint 'sec-team', which does not exist" \
        in caplog.text


async def _add_endpoint(dsn: str, name: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO webhook_endpoints (name, url, url_origin, kind, events)"
            " VALUES ($1, 'https://hooks.example.com/', 'https://hooks.example.com', 'slack',"
            " '{}')", name)
    finally:
        await conn.close()
