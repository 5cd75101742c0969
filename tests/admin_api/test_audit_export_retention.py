"""An export whose range retention drops a month of while it streams: cut with one
warning line (no last chunk), never ended as if the events of that month were all it
had. An admin exporting the oldest month to archive it before retention removes it
otherwise kept a file that looked whole."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import routes_audit
from postwarden_admin_api.context import Role
from postwarden_admin_api.retention import enforce_retention
from postwarden_store import connect
from tests.admin_api.test_audit_export_timeout import LAST_CHUNK, export
from tests.fixtures.adminapp import MintKey

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


async def _events(conn: asyncpg.Connection, queue_id: str, times: list[dt.datetime]) -> None:
    for when in times:
        await conn.execute("SELECT audit_ensure_partition($1)", when)
        await conn.execute(
            "INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid,"
            " sender, recipients, size, action, rules, changes, policy_hash, duration_ms)"
            " VALUES ($1, $2, 'mx1', $3, 'u', 'a@example.org', '{}', 1, 'accept', '{}',"
            " '[]', 'h', 1)", uuid.uuid4(), when, queue_id)


async def test_a_month_retention_drops_mid_export_cuts_it(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    conn = await connect(database_url)
    now = await conn.fetchval("SELECT now()")
    old = now - dt.timedelta(days=100)  # kept by the default 180 days, not by 30
    queue_id = f"Q{uuid.uuid4().hex[:12].upper()}"
    await _events(conn, queue_id, [old, old + dt.timedelta(minutes=1),
                                   now - dt.timedelta(minutes=2), now - dt.timedelta(minutes=1)])
    key = await mint_key(Role.AUDITOR)
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 1)
    first_page = routes_audit._export_page
    dropped: list[str] = []

    async def retention_after_the_first(request: Any, filters: Any, after: Any) -> Any:
        if after is not None and not dropped:  # the first page is out
            await conn.execute("INSERT INTO runtime_settings (name, value) "
                               "VALUES ('audit_retention_days', '30')")
            dropped.extend(await enforce_retention(conn))
        return await first_page(request, filters, after)

    monkeypatch.setattr(routes_audit, "_export_page", retention_after_the_first)
    caplog.set_level(logging.INFO, logger=routes_audit.log.name)
    try:
        data = await export(admin_client, key, queue_id)
    finally:
        await conn.close()
    assert dropped == [f"audit_events_{old:%Y%m}"]
    assert data.startswith(b"HTTP/1.1 200 ")
    assert not data.endswith(LAST_CHUNK)  # so the client can tell it is incomplete
    records = [r for r in caplog.records if r.name == routes_audit.log.name]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)]
    assert "retention dropped" in records[0].getMessage()


async def test_a_month_dropped_just_before_the_last_page_is_read_cuts_the_export(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page read retention's first month kept before its rows: a drop committed
    in between was not in that value, and the last page, missing the month, ended
    the export as whole."""
    conn = await connect(database_url)
    now = await conn.fetchval("SELECT now()")
    old = now - dt.timedelta(days=100)
    queue_id = f"Q{uuid.uuid4().hex[:12].upper()}"
    await _events(conn, queue_id, [old, now - dt.timedelta(minutes=1), now])
    key = await mint_key(Role.AUDITOR)
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 1)
    page_rows = routes_audit.search_rows
    dropped: list[str] = []

    def retention_before_the_rows(page: Any, filters: Any, after: Any, limit: int) -> Any:
        async def rows() -> Any:
            if after is not None and not dropped:  # in a later page's transaction
                await conn.execute("INSERT INTO runtime_settings (name, value) "
                                   "VALUES ('audit_retention_days', '30')")
                dropped.extend(await enforce_retention(conn))
            async for row in page_rows(page, filters, after, limit):
                yield row
        return rows()

    monkeypatch.setattr(routes_audit, "search_rows", retention_before_the_rows)
    try:
        data = await export(admin_client, key, queue_id)
    finally:
        await conn.close()
    assert dropped == [f"audit_events_{old:%Y%m}"]
    assert data.startswith(b"HTTP/1.1 200 ") and not data.endswith(LAST_CHUNK)


async def test_an_export_starting_after_the_months_it_asks_for_were_dropped_ends(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A range reaching back past retention is no error: what is kept is the export."""
    conn = await connect(database_url)
    now = await conn.fetchval("SELECT now()")
    queue_id = f"Q{uuid.uuid4().hex[:12].upper()}"
    try:
        await _events(conn, queue_id, [now - dt.timedelta(days=100), now])
        await conn.execute("INSERT INTO runtime_settings (name, value) "
                           "VALUES ('audit_retention_days', '30')")
        assert await enforce_retention(conn)
    finally:
        await conn.close()
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 1)
    key = await mint_key(Role.AUDITOR)
    data = await export(admin_client, key, f"{queue_id}&since=2000-01-01T00:00:00Z")
    assert data.endswith(LAST_CHUNK) and data.count(queue_id.encode()) == 1


def test_only_a_drop_reaching_into_the_range_cuts_an_export() -> None:
    december, january = (dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
                         dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert routes_audit._dropped_meanwhile(None, december, january)
    assert routes_audit._dropped_meanwhile(None, None, january)  # retention's first round
    assert routes_audit._dropped_meanwhile(december, december - dt.timedelta(days=1), january)
    assert not routes_audit._dropped_meanwhile(None, january, january)
    assert not routes_audit._dropped_meanwhile(january, december, january)  # since: kept
