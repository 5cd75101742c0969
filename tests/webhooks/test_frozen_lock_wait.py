"""A webhook PATCH or DELETE waits for the endpoint's row as long as a delete may hold
it (row_wait_seconds: webhook_timeout_seconds, here an hour, and 70 s), past the
statements' command timeout (1 s here): a database frozen meanwhile was told only at
the wait's end. A probe on another connection now finds it silent, and the request is
503 database_unavailable. The row is held by a session the freeze does not reach, as
a delete's would; a TCP relay on loopback stands for the network (.dbrelay)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from postwarden_admin_api import app as app_module
from postwarden_admin_api.app import create_app
from postwarden_admin_api.webhooks import WEBHOOK_OPTIONS
from postwarden_store import connect
from tests.admin_api.test_database_lost_mid_transaction import (
    assert_503_once_frozen_in_its_lock_wait,
)
from tests.fixtures.adminapp import AiohttpClient, bearer, settings_for
from tests.fixtures.dbrelay import relayed

from .conftest import StubDns
from .receiver import Receiver, Tls
from .support import generate_secret, worker_options
from .test_settings_change_race import _create, _url

pytestmark = pytest.mark.postgres

HOLD_ROW = "SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR UPDATE"
BODIES: dict[str, Any] = {"PATCH": {"events": ["message.rejected"]}, "DELETE": None}


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_wait_for_a_deletes_row_on_a_frozen_database_is_503(  # noqa: PLR0917
    aiohttp_client: AiohttpClient, database_url: str, tls: Tls, dns: StubDns,
    admin_key: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, method: str,
) -> None:
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    holder = await connect(database_url)
    try:
        async with relayed(database_url) as (relay, through):
            app = create_app(settings_for(through))
            app[WEBHOOK_OPTIONS] = worker_options(tls, dns, timeout_seconds=3600.0)
            client = await aiohttp_client(app)
            hook = await _create(client, admin_key, _url(receiver), generate_secret(),
                                 name=f"frozen-{method.lower()}")
            async with holder.transaction():
                await holder.execute(HOLD_ROW, int(hook.rsplit("/", 1)[1]))
                asking = asyncio.create_task(client.request(
                    method, hook, headers=bearer(admin_key), json=BODIES[method],
                    timeout=aiohttp.ClientTimeout(total=60)))  # the test's own bound
                await assert_503_once_frozen_in_its_lock_wait(holder, relay, asking)
    finally:
        await holder.close()
