"""An audit export streams for as long as it takes, but only while its key is live: a
key revoked meanwhile gets no further page (one warning line, and a body without its
last chunk, so the client can tell the export is incomplete)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import routes_audit
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key, revoke_key, split_key
from postwarden_store import connect
from tests.admin_api.test_audit_export_timeout import (
    _three_events,
    assert_cut_after_the_first_page,
    export,
)
from tests.fixtures.adminapp import AiohttpClient, MintKey, settings_for

pytestmark = pytest.mark.postgres


async def test_a_key_revoked_mid_export_gets_no_further_page(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 2)
    conn = await connect(database_url)
    queue_id = await _three_events(conn)
    key = await mint_key(Role.AUDITOR)
    page = routes_audit._export_page

    async def revoked_after_the_first(request: Any, filters: Any, after: Any) -> Any:
        if after is not None:  # the 200 and the first page are out: an admin revokes
            parts = split_key(key)
            assert parts is not None and await revoke_key(conn, parts[0])
        return await page(request, filters, after)

    monkeypatch.setattr(routes_audit, "_export_page", revoked_after_the_first)
    caplog.set_level(logging.INFO, logger=routes_audit.log.name)
    try:
        data = await export(admin_client, key, queue_id)
    finally:
        await conn.close()
    assert_cut_after_the_first_page(data, queue_id)
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == routes_audit.log.name] == [
        ("WARNING", "audit export cut after 2 events: unauthenticated (the key was revoked "
                    "or expired)")]


async def test_a_development_key_export_stops_once_a_key_is_created(
    fresh_database_url: str, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The development fallback key works only until a first key exists; an export it
    began went on to its end (its liveness was taken for granted)."""
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 2)
    client = await aiohttp_client(create_app(settings_for(fresh_database_url,
                                                          development_key=True)))
    conn = await connect(fresh_database_url)
    queue_id = await _three_events(conn)
    page = routes_audit._export_page

    async def first_key_after_the_first(request: Any, filters: Any, after: Any) -> Any:
        if after is not None:  # the 200 and the first page are out: the admin's first key
            await create_key(conn, Role.ADMIN, "first")
        return await page(request, filters, after)

    monkeypatch.setattr(routes_audit, "_export_page", first_key_after_the_first)
    try:
        data = await export(client, "dev-admin-key", queue_id)
    finally:
        await conn.close()
    assert_cut_after_the_first_page(data, queue_id)
