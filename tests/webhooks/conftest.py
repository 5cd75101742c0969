"""Fixtures of the webhook tests: TLS material, a local HTTPS receiver, a DNS stub,
the admin service started with that receiver reachable."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.settings import ServiceSettings
from postwarden_admin_api.webhooks import WEBHOOK_OPTIONS
from postwarden_admin_api.webhooks.ssrf import IPAddress
from postwarden_store import create_pool
from tests.fixtures.adminapp import (  # noqa: F401 - fixtures
    AiohttpClient,
    admin_key,
    admin_settings,
    fresh_outages,
    make_admin_settings,
    mint_key,
)

from .receiver import Receiver, Tls, make_tls
from .support import worker_options

RECEIVER_NAME = "hooks.example.test"


class StubDns:
    """Answers from a table; each call pops the next answer of a name (the last one stays)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise OSError("name does not resolve")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(a) for a in answer]


@pytest.fixture(scope="session")
def tls() -> Iterator[Tls]:
    yield make_tls([RECEIVER_NAME, "rebind.example.test"])


@pytest.fixture
async def receiver(tls: Tls) -> AsyncIterator[Receiver]:
    server = Receiver("127.0.0.1", tls)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def hook_url(receiver: Receiver) -> str:
    return f"https://{RECEIVER_NAME}:{receiver.port}/hook"


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_database_url, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def dns() -> StubDns:
    return StubDns({RECEIVER_NAME: [["127.0.0.1"]]})


Start = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def start(
    aiohttp_client: AiohttpClient,
    admin_settings: ServiceSettings,  # noqa: F811 - the imported fixture
    tls: Tls, dns: StubDns,
) -> Start:
    """Start the admin service with the test receiver reachable (loopback allowed)."""

    async def started(**overrides: Any) -> TestClient[Any, Any]:
        app = create_app(admin_settings)
        app[WEBHOOK_OPTIONS] = worker_options(tls, dns, **overrides)
        return await aiohttp_client(app)

    return started
