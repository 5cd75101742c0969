"""An audit export streams for as long as it takes, but only while its key is live: a
key revoked meanwhile gets no further page (one warning line, and a body without its
last chunk, so the client can tell the export is incomplete)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key, revoke_key, split_key
from postwarden_store import connect
from tests.admin_api.test_audit_export_timeout import (
    _three_events,
    export_cut_by,
)
from tests.fixtures.adminapp import AiohttpClient, MintKey, settings_for

pytestmark = pytest.mark.postgres


async def test_a_key_revoked_mid_export_gets_no_further_page(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    conn = await connect(database_url)
    queue_id = await _three_events(conn)
    key = await mint_key(Role.AUDITOR)

    async def an_admin_revokes() -> None:
        parts = split_key(key)
        assert parts is not None and await revoke_key(conn, parts[0])

    try:
        records = await export_cut_by(admin_client, key, queue_id, monkeypatch, caplog,
                                      an_admin_revokes)
    finally:
        await conn.close()
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("WARNING", "audit export cut after 2 events: unauthenticated (the key was revoked "
                    "or expired)")]


async def test_a_development_key_export_stops_once_a_key_is_created(
    fresh_database_url: str, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The development fallback key works only until a first key exists; an export it
    began went on to its end (its liveness was taken for granted)."""
    client = await aiohttp_client(create_app(settings_for(fresh_database_url,
                                                          development_key=True)))
    conn = await connect(fresh_database_url)
    queue_id = await _three_events(conn)

    async def the_admins_first_key() -> None:
        await create_key(conn, Role.ADMIN, "first")

    try:
        await export_cut_by(client, "dev-admin-key", queue_id, monkeypatch, caplog,
                            the_admins_first_key)
    finally:
        await conn.close()
