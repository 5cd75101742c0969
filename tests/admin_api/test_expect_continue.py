"""``Expect: 100-continue`` is answered only once the request is admitted: a client with
no key, a wrong key or a key of another role gets its refusal without ``100 Continue``
(aiohttp's own handling would invite it to upload its body first), with
``Connection: close``, since the client may then not send the body at all. Served as in production,
talked to over a raw socket that waits for the answer before it sends the body."""

from __future__ import annotations

import asyncio
import json

import pytest

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey

pytestmark = pytest.mark.postgres

DEADLINE = 10.0  # seconds the test waits for any answer
BODY = b'{"outbound_max_recipients": 50}'



async def _open(port: int, request_line: str, headers: str
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"{request_line} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(BODY)}\r\n{headers}\r\n").encode())
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next response's head and body (the body by its Content-Length)."""
    async with asyncio.timeout(DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100 "):
            return head, b""
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return head, await reader.readexactly(length)


def _code(body: bytes) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


@pytest.mark.parametrize("request_line", [
    pytest.param("PUT /api/v1/settings", id="settings"),
    pytest.param("POST /api/v1/send-email", id="send-email"),  # a route of send's own
    pytest.param("POST /api/v1/policies", id="policy-upload"),
])
@pytest.mark.parametrize("auth", [
    pytest.param("", id="no-key"),
    pytest.param("Authorization: Bearer pw_0123456789abcdef_wrong\r\n", id="wrong-key"),
])
async def test_no_100_continue_before_authentication(served_port: int, request_line: str,
                                                     auth: str) -> None:
    reader, writer = await _open(served_port, request_line, auth + "Expect: 100-continue\r\n")
    try:
        head, body = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 401 ")
        assert _code(body) == "unauthenticated"
        # The client may now send its body or not: nothing after it on this connection
        # could be told from a body.
        assert b"\r\nConnection: close\r\n" in head
    finally:
        writer.close()


async def test_no_100_continue_for_a_key_of_another_role(served_port: int,
                                                         mint_key: MintKey) -> None:
    key = await mint_key(Role.AUDITOR)
    reader, writer = await _open(served_port, "PUT /api/v1/settings",
                                 f"Authorization: Bearer {key}\r\nExpect: 100-continue\r\n")
    try:
        head, body = await _answer(reader)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 403 ")
    assert _code(body) == "forbidden"


async def test_an_admitted_request_gets_100_continue_then_its_answer(
    served_port: int, mint_key: MintKey
) -> None:
    key = await mint_key(Role.OPERATOR)
    reader, writer = await _open(served_port, "PUT /api/v1/settings",
                                 f"Authorization: Bearer {key}\r\nExpect: 100-continue\r\n")
    try:
        head, _ = await _answer(reader)
        assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(BODY)
        head, body = await _answer(reader)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" not in head
    assert b"outbound_max_recipients" in body


async def test_another_expectation_is_417(served_port: int, mint_key: MintKey) -> None:
    key = await mint_key(Role.OPERATOR)
    reader, writer = await _open(served_port, "PUT /api/v1/settings",
                                 f"Authorization: Bearer {key}\r\nExpect: 200-ok\r\n")
    try:
        head, body = await _answer(reader)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 417 ")
    assert _code(body) == "expectation_failed"


async def test_a_public_path_meets_the_expectation(served_port: int) -> None:
    reader, writer = await _open(served_port, "GET /healthz", "Expect: 100-continue\r\n")
    try:
        head, _ = await _answer(reader)
        assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(BODY)
        head, _ = await _answer(reader)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
