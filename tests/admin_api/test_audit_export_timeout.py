"""An export whose later page runs past the statement timeout, once the 200 is out:
one warning line (no traceback), and a body without its last chunk, so the client can
tell the export is incomplete."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import audit_queries, httpserver, routes_audit
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from tests.admin_api.test_hostile_input import _raw
from tests.fixtures.adminapp import MintKey
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.postgres
WHEN = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
LAST_CHUNK = b"0\r\n\r\n"


async def _three_events(conn: asyncpg.Connection) -> str:
    queue_id = f"Q{uuid.uuid4().hex[:12].upper()}"
    await conn.execute("SELECT audit_ensure_partition($1)", WHEN)
    for minute in range(3):
        await conn.execute(
            "INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid,"
            " sender, recipients, size, action, rules, changes, policy_hash, duration_ms)"
            " VALUES ($1, $2, 'mx1', $3, 'u', 'a@example.org', '{}', 1, 'accept', '{}',"
            " '[]', 'h', 1)", uuid.uuid4(), WHEN + dt.timedelta(minutes=minute), queue_id)
    return queue_id


async def export(client: TestClient[Any, Any], key: str, queue_id: str) -> bytes:
    """The raw answer to an export of ``queue_id``'s events (in pages of 2)."""
    return await _raw(client, (
        f"GET /api/v1/audit/export?queue_id={queue_id} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\n\r\n").encode())


def assert_cut_after_the_first_page(data: bytes, queue_id: str) -> None:
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.count(queue_id.encode()) == 2  # the first page only
    assert not data.endswith(LAST_CHUNK)  # so the client can tell it is incomplete


async def export_cut_by(  # noqa: PLR0917 - fixtures and the step
    client: TestClient[Any, Any], key: str, queue_id: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, before_a_later_page: Callable[[], Awaitable[object]],
) -> list[logging.LogRecord]:
    """An export of ``queue_id``'s events in pages of 2, ``before_a_later_page`` run once
    the 200 and the first page are out: it must be cut there. Its log records."""
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 2)
    read_page = routes_audit._export_page

    async def page(request: Any, filters: Any, after: Any) -> Any:
        if after is not None:
            await before_a_later_page()
        return await read_page(request, filters, after)

    monkeypatch.setattr(routes_audit, "_export_page", page)
    caplog.set_level(logging.INFO, logger=routes_audit.log.name)
    assert_cut_after_the_first_page(await export(client, key, queue_id), queue_id)
    return [r for r in caplog.records if r.name == routes_audit.log.name]


async def test_a_later_page_past_the_statement_timeout_cuts_the_export_with_one_line(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(audit_queries, "STATEMENT_TIMEOUT_MS", 200)
    blocker = await connect(database_url)
    queue_id = await _three_events(blocker)
    key = await mint_key(Role.AUDITOR)

    async def slow_reads() -> None:
        await blocker.execute("BEGIN; LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")

    try:
        records = await export_cut_by(admin_client, key, queue_id, monkeypatch, caplog,
                                      slow_reads)
    finally:
        await blocker.close()
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("WARNING", "audit export cut after 2 events: query_timeout (the query ran "
                    "past 0.2 s; narrow the time range or the filters)")]
    assert records[0].exc_info is None


async def test_a_client_that_goes_away_mid_export_is_one_line_not_a_traceback(
    admin_settings: ServiceSettings, mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Served as in production (aiohttp's test server cancels a handler whose client
    left; the service's goes on to its next write, which fails)."""
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 2)
    conn = await connect(database_url)
    try:
        queue_id = await _three_events(conn)
    finally:
        await conn.close()
    key = await mint_key(Role.AUDITOR)
    port = free_port()
    runner = await httpserver.start(create_app(admin_settings), "127.0.0.1", port)
    first_page = routes_audit._export_page

    async def after_the_client_left(pool: Any, filters: Any, after: Any) -> Any:
        if after is not None:  # the first page is out; the client closes meanwhile
            [handler] = runner.server.connections  # type: ignore[union-attr]
            for _ in range(600):  # bounded: 30 s at most
                if handler.transport is None:
                    break
                await asyncio.sleep(0.05)
        return await first_page(pool, filters, after)

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == routes_audit.log.name]

    monkeypatch.setattr(routes_audit, "_export_page", after_the_client_left)
    caplog.set_level(logging.INFO, logger=routes_audit.log.name)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET /api/v1/audit/export?queue_id={queue_id} HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {key}\r\n\r\n").encode())
        async with asyncio.timeout(30):
            assert (await reader.readuntil(queue_id.encode())).startswith(b"HTTP/1.1 200 ")
        writer.close()
        for _ in range(600):  # bounded: until the handler has met the closed connection
            if logged():
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in logged()] == [
        ("INFO", "audit export: the client went away after 2 events", None)]
