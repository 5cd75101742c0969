"""A connection lost in a TLS handshake is the URL's fault only where the URL asks for
sslnegotiation=direct: asyncio's TLS layer raises the same bare ConnectionResetError
for a server going down mid-handshake, which was taken for an invalid database_url
(exit 2, which systemd does not restart) with sslmode=require against a server
restarting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from postwarden_store import DatabaseUrlRefused, refusing_bad_url


async def _hang_up_in_handshake(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
    """A server that takes TLS (answers PostgreSQL's SSLRequest "S", or is sent TLS
    directly) and goes away once the handshake starts."""
    first = await reader.read(8)
    if first == b"\x00\x00\x00\x08\x04\xd2\x16\x2f":  # SSLRequest
        writer.write(b"S")
        await writer.drain()
        await reader.read(1)  # the ClientHello begins
    writer.close()


@pytest.fixture
async def going_down() -> AsyncIterator[int]:
    server = await asyncio.start_server(_hang_up_in_handshake, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _connect(dsn: str) -> None:
    with refusing_bad_url(dsn):
        await asyncpg.connect(dsn, timeout=10)


async def test_a_server_going_down_mid_handshake_is_an_outage(going_down: int) -> None:
    with pytest.raises(ConnectionResetError):
        await _connect(f"postgresql://pw@127.0.0.1:{going_down}/db?sslmode=require")


async def test_direct_tls_cut_off_is_the_urls_fault(going_down: int) -> None:
    dsn = f"postgresql://pw@127.0.0.1:{going_down}/db?sslmode=require&sslnegotiation=direct"
    with pytest.raises(DatabaseUrlRefused, match="sslnegotiation=direct"):
        await _connect(dsn)


async def test_pgsslnegotiation_direct_counts_as_the_url_saying_it(
        going_down: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLNEGOTIATION", "direct")
    with pytest.raises(DatabaseUrlRefused, match="sslnegotiation=direct"):
        await _connect(f"postgresql://pw@127.0.0.1:{going_down}/db?sslmode=require")
