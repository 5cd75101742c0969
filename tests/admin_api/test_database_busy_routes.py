"""Every route family waits for a pooled connection at most ``ACQUIRE_TIMEOUT``: with
the pool full it answers 503 ``database_busy`` instead of waiting for ever.

The pool is filled once the request is admitted: authentication and admission take
a connection of their own first (a full pool there is test_pool_exhaustion's case),
so a test middleware after ``access`` holds every connection while the handler runs.
"""
from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from postwarden_admin_api import errors
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL, Role
from postwarden_admin_api.metrics import METRICS
from postwarden_admin_api.runtime_settings import apply_changes
from postwarden_admin_api.secrets import Keyring
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer
from tests.fixtures.scripted_smtp import Scripted, smtp_server  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres
POOL_SIZE = 3
ANSWER_BOUND = 30  # seconds: a failure bound for "answered at all", not a measurement
MAIL = {"from": "App <app@example.com>", "to": ["someone@example.org"],
        "subject": "Hello", "text": "Hi there"}

# (method, path, JSON body, extra headers): each reaches its handler's connection.
CASES: dict[str, tuple[str, str, Any, dict[str, str]]] = {
    "keys list": ("GET", "/api/v1/keys", None, {}),
    "keys create": ("POST", "/api/v1/keys", {"role": "auditor", "name": "busy"}, {}),
    "keys revoke": ("DELETE", "/api/v1/keys/abc", None, {}),
    "keys rotate": ("POST", "/api/v1/keys/abc/rotate", {}, {}),
    "settings get": ("GET", "/api/v1/settings", None, {}),
    "settings put": ("PUT", "/api/v1/settings", {"outbound_enabled": True}, {}),
    "rules list": ("GET", "/api/v1/rules", None, {}),
    "rules create": ("POST", "/api/v1/rules",
                     {"rule": {"name": "busy", "when": {"header": {"name": "X-Busy",
                                                                   "exists": True}},
                               "then": {"action": "accept"}}}, {}),
    "rules update": ("PATCH", "/api/v1/rules/busy", {"comment": "x"}, {}),
    "rules delete": ("DELETE", "/api/v1/rules/busy", None, {}),
    "webhooks list": ("GET", "/api/v1/webhooks", None, {}),
    "webhooks create": ("POST", "/api/v1/webhooks",
                        {"name": "busy", "url": "https://hooks.example.com/x",
                         "secret": "whsec_" + base64.b64encode(bytes(32)).decode()}, {}),
    "webhooks get": ("GET", "/api/v1/webhooks/1", None, {}),
    "webhooks update": ("PATCH", "/api/v1/webhooks/1", {"enabled": False}, {}),
    "webhooks delete": ("DELETE", "/api/v1/webhooks/1", None, {}),
    "webhooks deliveries": ("GET", "/api/v1/webhooks/1/deliveries", None, {}),
    "webhooks replay": ("POST", "/api/v1/webhooks/1/deliveries/1/replay", None, {}),
    "messages search": ("GET", "/api/v1/messages", None, {}),
    "message get": ("GET", "/api/v1/messages/00000000-0000-0000-0000-000000000000", None, {}),
    "suppressions list": ("GET", "/api/v1/suppressions", None, {}),
    "suppressions add": ("POST", "/api/v1/suppressions", {"address": "a@example.org"}, {}),
    "suppressions delete": ("DELETE", "/api/v1/suppressions?address=a@example.org", None, {}),
    "send-email enqueue": ("POST", "/api/v1/send-email", MAIL, {}),
    "send-email idempotency claim": ("POST", "/api/v1/send-email", MAIL,
                                     {"Idempotency-Key": "busy-1"}),
}


def _holding_the_pool(pool_size: int) -> Callable[..., Any]:
    @web.middleware
    async def hold(request: web.Request, handler: Handler) -> web.StreamResponse:
        pool = request.app[POOL]
        held: list[asyncpg.Connection] = []
        try:
            # The workers' connections come back within the bound.
            async with asyncio.timeout(ANSWER_BOUND):
                while len(held) < pool_size:
                    held.append(await pool.acquire())
            return await handler(request)
        finally:
            for conn in held:
                await pool.release(conn)
    return hold


@pytest.fixture
async def outbound_on(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        await apply_changes(conn, Keyring(None), {
            "allowed_sender_addresses": ["*@example.com"], "outbound_enabled": True,
        }, "tests")
    finally:
        await conn.close()


@pytest.fixture
async def busy_app(
        aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
        smtp_server: tuple[Scripted, int],  # noqa: F811 - the imported fixture
        outbound_on: None, monkeypatch: pytest.MonkeyPatch) -> tuple[web.Application, Any]:
    """An app whose pool is full while its handlers run (a relay to send to, if they
    got that far), and its client."""
    monkeypatch.setattr(errors, "ACQUIRE_TIMEOUT", 0.5)
    app = create_app(make_admin_settings(pool_max_size=POOL_SIZE, relay_host="127.0.0.1",
                                         relay_port=smtp_server[1]))
    app.middlewares.append(_holding_the_pool(POOL_SIZE))
    return app, await aiohttp_client(app)


@pytest.mark.parametrize("case", CASES)
async def test_a_full_pool_answers_503_database_busy_on_every_route_family(
        case: str, busy_app: tuple[web.Application, Any], mint_key: MintKey,
        database_url: str) -> None:
    app, client = busy_app
    method, path, body, headers = CASES[case]
    role = Role.SENDER if path.startswith("/api/v1/send-email") else Role.ADMIN
    key = await mint_key(role, allowed_senders=["app@example.com"])
    async with asyncio.timeout(ANSWER_BOUND):
        answer = await client.request(method, path, json=body,
                                      headers={**bearer(key), **headers})
        shown = await answer.json()
    assert answer.status == 503, shown
    assert answer.headers["Retry-After"] == "1"
    assert shown == {"error": {"code": "database_busy",
                               "message": "every database connection is in use, retry later",
                               "details": []}}
    # The database's trouble is no failed login.
    assert app[METRICS].registry.get_sample_value("postwarden_api_auth_failures_total") == 0
    conn = await connect(database_url)
    try:  # the sends answered before they wrote anything: no message, no claimed key
        assert await conn.fetchval("SELECT count(*) FROM outbound_messages") == 0
        assert await conn.fetchval("SELECT count(*) FROM send_idempotency") == 0
    finally:
        await conn.close()
