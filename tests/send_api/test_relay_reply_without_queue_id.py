"""A 250 that names no queue id: Postfix with a before-queue content filter
(``smtpd_proxy_filter``) answers the client with the filter's own reply, which need not
say ``queued as``. Postfix took the message, and nothing in its log can be tied to it:
the message is ``untracked``, a final status, instead of ``relayed`` for good.

The filter here is a plain SMTP server that accepts the message and drops it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import master_cf_options, running_postfix

from .conftest import SetRuntime
from .test_e2e import SNIPPET, Client, body, eventually, settled

pytestmark = pytest.mark.postfix

FILTER_REPLY = "250 2.0.0 Accepted by the content filter"


class _Filter:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return FILTER_REPLY


@dataclass(frozen=True)
class Filtered:
    maillog: str
    port: int  # the listener whose mail goes through the filter


@pytest.fixture(scope="module")
def filtered() -> Iterator[Filtered]:
    filter_port = free_port()
    content_filter = Controller(_Filter(), hostname="127.0.0.1", port=filter_port)
    content_filter.start()
    ports: list[int] = []

    def listener(instance: Any) -> None:
        ports.append(instance.add_smtpd_listener(
            master_cf_options(SNIPPET) | {"smtpd_proxy_filter": f"127.0.0.1:{filter_port}"}))

    try:
        with running_postfix(configure=listener) as (postfix, _capture):
            yield Filtered(str(postfix.maillog), ports[0])
    finally:
        content_filter.stop()


@pytest.fixture
async def service(
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    set_runtime: SetRuntime, mint_key: MintKey, filtered: Filtered,
) -> tuple[Client, dict[str, str]]:
    """The service relaying to the filtered listener, and a sender's headers."""
    await set_runtime(allowed_sender_addresses=["*@example.com"], outbound_enabled=True,
                      outbound_per_key_per_minute=1000, outbound_per_recipient_per_day=1000)
    settings = make_admin_settings(
        relay_host="127.0.0.1", relay_port=filtered.port, relay_backoff_seconds=0.2,
        maillog_path=filtered.maillog, maillog_host=f"untracked-{uuid.uuid4().hex[:6]}")
    client = await aiohttp_client(create_app(settings))
    return client, bearer(await mint_key(Role.SENDER, ["*@example.com"]))


async def test_a_message_postfix_took_without_a_queue_id_is_untracked(
    service: tuple[Client, dict[str, str]], pool: asyncpg.Pool,
) -> None:
    """It stayed ``relayed`` with no queue id, never settled: a client polling until the
    status is final (as the docs say) polled for ever."""
    client, sender = service
    response = await client.post("/api/v1/send-email", json=body(), headers=sender)
    assert response.status == 202, await response.text()
    message = await eventually(
        lambda: settled(client, sender, response.headers["Location"]), within=30)
    assert (message["status"], message["queue_id"], message["last_error"]) == (
        "untracked", None, None)
    [accepted, relayed] = message["events"]
    assert (accepted["event"], relayed["event"]) == ("accepted", "relayed")
    assert relayed["detail"] == f"Postfix's reply names no queue id: {FILTER_REPLY}"
    assert [r["status"] for r in message["recipients"]] == ["relayed"]
    assert await pool.fetchval(
        "SELECT count(*) FROM outbound_messages WHERE status = 'untracked'") >= 1
