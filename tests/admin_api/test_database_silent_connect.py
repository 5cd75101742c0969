"""A request that waits for a pooled connection while a new one cannot be made (the
server, or a firewall on the way, takes the connection and never answers) was 503
``database_busy``, "every database connection is in use", with a pool far from full:
an admin looked for slow queries, a client retried after 1 s. It is
``database_unavailable``; a pool truly full stays ``database_busy``
(test_pool_exhaustion.py). A TCP relay on loopback stands for the network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import POOL, Role
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

pytestmark = pytest.mark.postgres


class Relay:
    """Relays loopback TCP to PostgreSQL; once ``silent``, new connections are taken and
    never answered."""

    def __init__(self, port: int) -> None:
        self.port, self.silent = port, False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.silent:
            await reader.read()  # until the client gives up
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()


@asynccontextmanager
async def relayed(database_url: str) -> AsyncIterator[tuple[Relay, str]]:
    parts = urlsplit(database_url)
    relay = Relay(parts.port or 5432)
    server = await asyncio.start_server(relay.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield relay, urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


async def test_a_connect_that_never_answers_is_database_unavailable(
        aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey) -> None:
    key = await mint_key(Role.ADMIN)
    async with relayed(database_url) as (relay, through):
        app = create_app(settings_for(through, pool_min_size=1, pool_max_size=4))
        client = await aiohttp_client(app)
        relay.silent = True
        await app[POOL].expire_connections()  # each acquire makes a new one
        answer = await client.get("/api/v1/keys", headers=bearer(key))
        body: Any = await answer.json()
    assert answer.status == 503
    assert body["error"]["code"] == "database_unavailable"
    assert answer.headers["Retry-After"] == "5"
