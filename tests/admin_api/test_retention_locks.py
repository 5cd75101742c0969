"""Retention beside open audit readers, and beside another instance doing the same.

Dropping an old partition waits for every reader of audit_events, and the milters'
writes queue behind the waiting DROP: retention waits a second at most and tries the
round again soon. Audit reads are cut at a statement timeout, so none holds its lock
for ever. Two instances running retention at once drop each partition once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import audit_queries, retention
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.periodic import Postponed
from postwarden_admin_api.retention import enforce_retention
from postwarden_milter.audit_pipeline import WRITE_TIMEOUT
from postwarden_store import connect, write_audit_batch
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for
from tests.store.test_audit import make_event

pytestmark = pytest.mark.postgres

OLD_MONTHS = [dt.datetime(2020, month, 10, tzinfo=dt.UTC) for month in range(1, 7)]
OLD_PARTITIONS = [f"audit_events_{m:%Y%m}" for m in OLD_MONTHS]
PARTITIONS = ("SELECT inhrelid::regclass::text FROM pg_inherits "
              "WHERE inhparent = 'audit_events'::regclass")
LOCK_WAITERS = ("SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'")
DEADLINE = 30.0  # only keeps a broken test from hanging
ENSURE = "SELECT audit_ensure_partition($1)"  # as a batch starts


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await condition():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def _open_reader(dsn: str) -> AsyncIterator[None]:
    """An auditor's slow query: a transaction that read audit_events, still open."""
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            await conn.fetchval("SELECT count(*) FROM audit_events")
            yield
    finally:
        await conn.close()


async def _partitions(conn: asyncpg.Connection) -> set[str]:
    return {row[0] for row in await conn.fetch(PARTITIONS)}


async def test_an_open_reader_postpones_retention_and_milter_writes_go_on(
    fresh_database_url: str,
) -> None:
    dsn = fresh_database_url
    conn, writer = await connect(dsn), await connect(dsn)
    try:
        await write_audit_batch(conn, [make_event(OLD_MONTHS[0])])
        async with _open_reader(dsn):
            job = asyncio.create_task(enforce_retention(conn))

            async def drop_waits_or_gave_up() -> bool:
                return job.done() or await writer.fetchval(LOCK_WAITERS) > 0

            await _until(drop_waits_or_gave_up)
            # A milter's write, behind the DROP, is through while the reader is still
            # open (were the DROP to wait for the reader, so would the write, until its
            # own lock timeout failed it).
            await asyncio.wait_for(write_audit_batch(writer, [make_event()]), WRITE_TIMEOUT)
            with pytest.raises(Postponed):
                await asyncio.wait_for(job, DEADLINE)
            assert OLD_PARTITIONS[0] in await _partitions(writer)
        assert await enforce_retention(conn) == OLD_PARTITIONS[:1]
    finally:
        await conn.close()
        await writer.close()


async def test_the_service_tries_a_postponed_round_again_soon(
    fresh_database_url: str, aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(retention, "LOCK_RETRY_SECONDS", 0.05)
    dsn = fresh_database_url
    conn = await connect(dsn)
    try:
        await write_audit_batch(conn, [make_event(OLD_MONTHS[0])])
        async with _open_reader(dsn):
            await aiohttp_client(create_app(settings_for(dsn, retention_interval_seconds=3600)))

            async def postponed() -> bool:
                return any(f"retention: audit_events stayed locked for {retention.LOCK_TIMEOUT}"
                           in r.getMessage() for r in caplog.records)

            await _until(postponed)  # the round at start

        async def dropped() -> bool:
            return OLD_PARTITIONS[0] not in await _partitions(conn)

        await _until(dropped)  # long before the hour's interval is over
    finally:
        await conn.close()
    assert next(r.levelname for r in caplog.records if "stayed locked" in r.getMessage()) \
        == "WARNING"


async def test_two_instances_at_once_drop_each_partition_once(fresh_database_url: str) -> None:
    dsn = fresh_database_url
    for _ in range(10):
        setup = await connect(dsn)
        try:
            # The last round's drops stay dropped: forget them to write the months again.
            await setup.execute("UPDATE audit_retention SET kept_from = NULL")
            await write_audit_batch(setup, [make_event(when) for when in OLD_MONTHS])
        finally:
            await setup.close()
        a, b = await connect(dsn), await connect(dsn)
        try:
            dropped = await asyncio.gather(enforce_retention(a), enforce_retention(b))
        finally:
            await a.close()
            await b.close()
        assert sorted(dropped[0] + dropped[1]) == OLD_PARTITIONS


async def test_retention_waits_for_a_batch_that_read_what_it_keeps(
    fresh_database_url: str,
) -> None:
    """A batch that asked for its partitions before retention moved what it keeps
    commits before anything is dropped (else it would make a month again that
    retention is dropping)."""
    dsn = fresh_database_url
    conn, batch = await connect(dsn), await connect(dsn)
    try:
        await write_audit_batch(conn, [make_event(OLD_MONTHS[0])])
        async with batch.transaction():
            assert await batch.fetchval(ENSURE, OLD_MONTHS[0]) == OLD_PARTITIONS[0]
            with pytest.raises(Postponed):
                await asyncio.wait_for(enforce_retention(conn), DEADLINE)
            assert OLD_PARTITIONS[0] in await _partitions(batch)
        assert await enforce_retention(conn) == OLD_PARTITIONS[:1]
        assert await batch.fetchval(ENSURE, OLD_MONTHS[0]) is None
    finally:
        await conn.close()
        await batch.close()


async def test_an_audit_read_is_cut_at_the_statement_timeout(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_queries, "STATEMENT_TIMEOUT_MS", 200)
    key = await mint_key(Role.AUDITOR)
    blocker = await connect(database_url)
    try:
        async with blocker.transaction():
            # Every audit read now waits for this lock: it stands for a read that is slow.
            await blocker.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
            for path in ("/api/v1/audit", "/api/v1/audit/export",
                         "/api/v1/audit/00000000-0000-4000-8000-000000000000",
                         "/api/v1/stats"):
                async with asyncio.timeout(DEADLINE):
                    response = await admin_client.get(path, headers=bearer(key))
                    assert response.status == 503, path
                    assert (await response.json())["error"]["code"] == "query_timeout", path
    finally:
        await blocker.close()
