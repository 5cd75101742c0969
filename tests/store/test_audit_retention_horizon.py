"""Retention's drops stay dropped: an event of a month retention dropped (a spooled
event replayed after a long outage) is not written, and its partition is not made
again; the writer says how many it skipped."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from postwarden_store import audit, connect
from postwarden_store.audit import Written, write_audit_batch
from tests.store.test_audit import make_event

pytestmark = pytest.mark.postgres

UTC = dt.UTC
OLD = dt.datetime(2020, 3, 10, tzinfo=UTC)
PARTITION = "audit_events_202003"
ENSURE = "SELECT audit_ensure_partition($1)"


async def _partition_exists(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", PARTITION))


async def test_a_replayed_event_of_a_dropped_month_does_not_bring_it_back(
    fresh_database_url: str,
) -> None:
    conn = await connect(fresh_database_url)
    try:
        assert await write_audit_batch(conn, [make_event(OLD)]) == Written(1, 0)
        dropped = [r[0] for r in await conn.fetch(
            "SELECT audit_drop_partitions_before($1)", dt.datetime(2020, 4, 15, tzinfo=UTC))]
        assert dropped == [PARTITION]

        late, now = make_event(OLD + dt.timedelta(days=1)), make_event()
        assert await write_audit_batch(conn, [late, now]) == Written(1, 1)
        assert not await _partition_exists(conn)
        stored = {row[0].hex for row in await conn.fetch("SELECT event_id FROM audit_events")}
        assert now.event_id in stored and late.event_id not in stored
        # April, the cutoff's month, is kept: a late event of it is still written
        april = make_event(dt.datetime(2020, 4, 2, tzinfo=UTC))
        assert await write_audit_batch(conn, [april]) == Written(1, 0)
    finally:
        await conn.close()


async def test_a_writer_not_yet_upgraded_gets_no_partition_for_a_dropped_month(
    fresh_database_url: str,
) -> None:
    """A milter of the previous version asks for the partition itself, then inserts."""
    conn = await connect(fresh_database_url)
    try:
        await conn.fetch("SELECT audit_drop_partitions_before($1)",
                         dt.datetime(2020, 5, 1, tzinfo=UTC))
        assert await conn.fetchval(ENSURE, OLD) is None
        assert not await _partition_exists(conn)
        assert await conn.fetchval(ENSURE, dt.datetime(2020, 5, 1, tzinfo=UTC)) \
            == "audit_events_202005"
    finally:
        await conn.close()


async def test_a_longer_retention_brings_no_dropped_month_back(fresh_database_url: str) -> None:
    conn = await connect(fresh_database_url)
    try:
        for cutoff in (dt.datetime(2020, 6, 1, tzinfo=UTC), dt.datetime(2020, 1, 1, tzinfo=UTC)):
            await conn.fetch("SELECT audit_drop_partitions_before($1)", cutoff)
        assert await write_audit_batch(conn, [make_event(OLD)]) == Written(0, 1)
        assert not await _partition_exists(conn)
    finally:
        await conn.close()


async def _waits_for_a_lock(observer: asyncpg.Connection, conn: asyncpg.Connection,
                            task: asyncio.Task[object]) -> bool:
    """Whether ``conn``'s query waits for a lock; False once ``task`` is done instead."""
    for _ in range(600):  # bounded: 30 s at most
        if task.done():
            return False
        if await observer.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
                                   "WHERE pid = $1", conn.get_server_pid()):
            return True
        await asyncio.sleep(0.05)
    raise AssertionError("neither done nor waiting for a lock")


async def test_a_batch_starting_while_retention_waits_queues_behind_it(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches overlapping one another must not keep retention out for ever: one that
    starts once retention waits comes after it, and sees what retention dropped."""
    monkeypatch.setattr(audit, "LOCK_TIMEOUT", "30s")  # the batch waits as long as it takes
    dsn = fresh_database_url
    observer, first, dropper, second = [await connect(dsn) for _ in range(4)]
    try:
        await write_audit_batch(observer, [make_event(OLD)])
        async with first.transaction():  # a batch under way: it asked for its partition
            assert await first.fetchval(ENSURE, dt.datetime.now(UTC)) is not None
            drop = asyncio.create_task(dropper.fetch(
                "SELECT audit_drop_partitions_before($1)", dt.datetime(2020, 4, 15, tzinfo=UTC)))
            assert await _waits_for_a_lock(observer, dropper, drop)
            batch = asyncio.create_task(write_audit_batch(second, [make_event(OLD)]))
            assert await _waits_for_a_lock(observer, second, batch), "it passed retention"
        assert [row[0] for row in await asyncio.wait_for(drop, 30)] == [PARTITION]
        assert await asyncio.wait_for(batch, 30) == Written(0, 1)
        assert not await _partition_exists(observer)
    finally:
        for conn in (observer, first, dropper, second):
            conn.terminate()
