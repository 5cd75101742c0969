"""An audit export whose client stops reading ends once a page is not taken in within
``EXPORT_WRITE_TIMEOUT``: the connection is closed and a warning logged, instead of a
socket and a page held for ever."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest

from postwarden_admin_api import routes_audit
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.settings import ServiceSettings
from tests.admin_api.test_pool_exhaustion import _write_events
from tests.fixtures.adminapp import AiohttpClient, MintKey
from tests.webhooks.receiver import wait_for

pytestmark = pytest.mark.postgres
BOUND = 30  # seconds: a failure bound for each step, not a measurement
LAST_CHUNK = b"0\r\n\r\n"  # a chunked body's end: the whole export was sent
READ_AT_MOST = 256 * 2**20  # bytes: more than the whole export


def _gave_up(caplog: pytest.LogCaptureFixture) -> Callable[[], bool]:
    return lambda: any(r.name == routes_audit.log.name and r.levelno == logging.WARNING
                       for r in caplog.records)


async def _read_to_the_end(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """What is left on the connection up to its end (EOF or reset)."""
    received = bytearray()
    async with asyncio.timeout(BOUND):
        while len(received) < READ_AT_MOST:
            try:
                chunk = await loop.sock_recv(sock, 2**16)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return bytes(received)


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
                   ) -> pytest.LogCaptureFixture:
    """A half-second write deadline; the export's warnings captured."""
    monkeypatch.setattr(routes_audit, "EXPORT_WRITE_TIMEOUT", 0.5)
    caplog.set_level(logging.WARNING, logger=routes_audit.log.name)
    return caplog


async def test_an_export_its_client_stops_reading_is_closed_after_the_write_deadline(
        aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
        mint_key: MintKey, database_url: str, short_deadline: pytest.LogCaptureFixture,
) -> None:
    caplog = short_deadline
    # Far more than the socket buffers hold: the handler ends up blocked writing.
    await _write_events(database_url, 10_000, "s" * 900)
    client = await aiohttp_client(create_app(make_admin_settings()))
    key = await mint_key(Role.AUDITOR)
    assert client.port is not None
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", client.port))
        # Connection: close, so that without the deadline the whole export would end
        # with its last chunk and then the connection.
        await loop.sock_sendall(sock, (
            "GET /api/v1/audit/export HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Bearer {key}\r\n\r\n").encode())
        async with asyncio.timeout(BOUND):
            assert await loop.sock_recv(sock, 1) == b"H"  # under way; then nothing read
        assert await wait_for(_gave_up(caplog), BOUND), "the export never gave up"
        rest = await _read_to_the_end(loop, sock)
    assert not rest.endswith(LAST_CHUNK), "the export was sent whole"
    assert len(rest) < READ_AT_MOST
    assert key not in caplog.text
