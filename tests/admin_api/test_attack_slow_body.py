"""A request body that stops arriving is answered 408 ``request_timeout`` once the client
has sent nothing for ``BODY_IDLE_SECONDS`` (nginx's client_body_timeout), instead of
holding its connection and handler for ever: any key of any role (a sender's, an
auditor's) could otherwise pin every file descriptor the service has."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestServer

from postwarden_admin_api import bodies
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, settings_for

pytestmark = pytest.mark.postgres

IDLE = 0.5  # seconds, for the test
ANSWER_DEADLINE = 20.0  # how long the test waits for any answer at all


async def _answer_to_a_stalled_body(server: TestServer, key: str, request: bytes,
                                    content_type: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request + b" HTTP/1.1\r\nHost: t\r\n"
                     b"Authorization: Bearer " + key.encode() + b"\r\n"
                     b"Content-Type: " + content_type + b"\r\nContent-Length: 100\r\n\r\n"
                     b'{"outbound')  # 10 of the 100 bytes, then nothing
        await writer.drain()
        async with asyncio.timeout(ANSWER_DEADLINE):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            return head + await reader.readexactly(length)
    finally:
        writer.close()


@pytest.mark.parametrize(("request_line", "content_type"), [
    (b"PUT /api/v1/settings", b"application/json"),
    (b"POST /api/v1/policies", b"application/yaml"),  # a raw upload
    (b"POST /api/v1/policies/test", b"application/x-www-form-urlencoded"),  # a form
], ids=["json", "policy-upload", "policy-test-form"])
async def test_a_stalled_body_is_a_408(
    database_url: str, mint_key: MintKey, monkeypatch: pytest.MonkeyPatch,
    request_line: bytes, content_type: bytes,
) -> None:
    monkeypatch.setattr(bodies, "BODY_IDLE_SECONDS", IDLE)
    server = TestServer(create_app(settings_for(database_url)), host="127.0.0.1")
    await server.start_server()
    try:
        answer = await _answer_to_a_stalled_body(server, await mint_key(Role.OPERATOR),
                                                 request_line, content_type)
    finally:
        await server.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_a_trickling_body_is_a_408_once_past_its_time(
    database_url: str, mint_key: MintKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A byte more often than the idle limit, never the whole body: without a deadline
    # for the whole, one byte a minute would hold the handler for ever.
    monkeypatch.setattr(bodies, "BODY_IDLE_SECONDS", IDLE)
    monkeypatch.setattr(bodies, "BODY_MIN_RATE", 100)  # 100 bytes: IDLE + 1 s in all
    server = TestServer(create_app(settings_for(database_url)), host="127.0.0.1")
    await server.start_server()
    key = await mint_key(Role.OPERATOR)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"PUT /api/v1/settings HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                     + key.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n")
        answer = asyncio.ensure_future(reader.read(65536))
        sent = 0
        while sent < 99 and not answer.done():  # bounded: under 99 bytes, at most ~25 s
            writer.write(b" ")
            await writer.drain()
            sent += 1
            await asyncio.wait({answer}, timeout=IDLE / 2)
        head = await asyncio.wait_for(answer, ANSWER_DEADLINE)
    finally:
        writer.close()
        await server.close()
    assert head.startswith(b"HTTP/1.1 408 ")
    assert sent < 50  # answered while the body still trickled, not once it stopped
