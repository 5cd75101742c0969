"""Clients cannot freeze the service by holding its database connections: an audit
export holds none while its client reads, and a request that finds the pool full
for too long gets 503 ``database_busy`` instead of waiting for ever."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from postwarden_admin_api import errors
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL, Role
from postwarden_admin_api.metrics import METRICS
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer
from tests.webhooks.support import audit_event

pytestmark = pytest.mark.postgres
POOL_SIZE = 3
ANSWER_BOUND = 60  # seconds: a failure bound for "answered at all", not a measurement


async def _write_events(database_url: str, count: int, subject: str) -> None:
    event = dataclasses.replace(audit_event("reject"), subject=subject)
    conn = await connect(database_url)
    try:
        for start in range(0, count, 2500):
            await write_audit_batch(conn, [
                dataclasses.replace(event, event_id=audit_event().event_id)
                for _ in range(min(2500, count - start))])
    finally:
        await conn.close()


@asynccontextmanager
async def _unread_export(port: int, key: str) -> AsyncIterator[None]:
    """An export under way whose client reads nothing more."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, (f"GET /api/v1/audit/export HTTP/1.1\r\nHost: x\r\n"
                                       f"Authorization: Bearer {key}\r\n\r\n").encode())
        async with asyncio.timeout(ANSWER_BOUND):
            # One byte of the answer: the export is under way (it has its first
            # page); the rest stays unread.
            assert await loop.sock_recv(sock, 1) == b"H"
        yield


async def test_unread_exports_do_not_stop_another_keys_requests(
        aiohttp_client: AiohttpClient, make_admin_settings: Any, mint_key: MintKey,
        database_url: str) -> None:
    # Far more than the socket buffers hold: each export's handler ends up
    # blocked writing to its client.
    await _write_events(database_url, 10_000, "s" * 900)
    client = await aiohttp_client(create_app(make_admin_settings(pool_max_size=POOL_SIZE)))
    auditor, operator = await mint_key(Role.AUDITOR), await mint_key(Role.OPERATOR)
    assert client.port is not None
    async with AsyncExitStack() as stack:
        for _ in range(POOL_SIZE):
            await stack.enter_async_context(_unread_export(client.port, auditor))
        async with asyncio.timeout(ANSWER_BOUND):
            answer = await client.get("/api/v1/stats", headers=bearer(operator))
        assert answer.status == 200
        assert (await answer.json())["totals"]["reject"] >= 10_000


async def test_export_pages_return_every_event_once_newest_first(
        admin_client: Any, role_keys: dict[Role, str], database_url: str) -> None:
    subject = f"paged-{uuid.uuid4().hex}"
    await _write_events(database_url, 1201, subject)  # two full pages of 500 and a short one
    answer = await admin_client.get("/api/v1/audit/export", params={"format": "ndjson"},
                                    headers=bearer(role_keys[Role.AUDITOR]))
    assert answer.status == 200
    events = [json.loads(line) for line in (await answer.text()).splitlines()]
    ours = [e for e in events if e["subject"] == subject]
    assert len(ours) == len({e["event_id"] for e in ours}) == 1201
    keys = [(e["time"], e["event_id"]) for e in events]
    assert keys == sorted(keys, reverse=True)


async def test_a_full_pool_answers_503_database_busy(
        aiohttp_client: AiohttpClient, make_admin_settings: Any, mint_key: MintKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "ACQUIRE_TIMEOUT", 0.5)
    app = create_app(make_admin_settings(pool_max_size=POOL_SIZE))
    client = await aiohttp_client(app)
    remembered, fresh = await mint_key(Role.OPERATOR), await mint_key(Role.OPERATOR)
    assert (await client.get("/api/v1/stats", headers=bearer(remembered))).status == 200
    pool = app[POOL]
    held = [await pool.acquire() for _ in range(POOL_SIZE)]
    try:
        # A remembered key waits in admission, a new one in key verification.
        for key in (remembered, fresh):
            async with asyncio.timeout(ANSWER_BOUND):
                answer = await client.get("/api/v1/stats", headers=bearer(key))
            assert answer.status == 503
            assert answer.headers["Retry-After"] == "1"
            assert (await answer.json())["error"]["code"] == "database_busy"
    finally:
        for conn in held:
            await pool.release(conn)
    assert (await client.get("/api/v1/stats", headers=bearer(fresh))).status == 200
    # A busy pool is no failed login: nothing counted against the client's address.
    assert app[METRICS].registry.get_sample_value("postwarden_api_auth_failures_total") == 0
