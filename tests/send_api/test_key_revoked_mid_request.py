"""A key revoked while its request's body still comes in sends nothing (migration
0036): the key was checked at the request's admission only, and a holder of a leaked key
could open requests before the revocation and finish them after it."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from tests.fixtures.scripted_smtp import Scripted

from .conftest import Client, body


async def test_a_key_revoked_while_its_body_comes_in_sends_nothing(
    client: Client, sender: dict[str, str], pool: asyncpg.Pool,
    smtp_server: tuple[Scripted, int],
) -> None:
    subject = f"after the revocation {uuid.uuid4()}"
    payload = json.dumps(body(subject=subject)).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        b"POST /api/v1/send-email HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: {sender['Authorization']}\r\n".encode()
        + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload[:10])
    await writer.drain()
    key_id = sender["Authorization"].split("_")[1]
    # Admitted (the admission marks the fresh key used): the handler now waits for the
    # rest of the body. Revoking before the admission would prove nothing.
    for _ in range(200):
        if await pool.fetchval("SELECT last_used_at FROM api_keys WHERE key_id = $1", key_id):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the request was not admitted within 10 s")
    assert await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1",
                              key_id) == "UPDATE 1"
    writer.write(payload[10:])
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, answer_body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n", 1)[0].split(b" ")[1] == b"401", head
    assert json.loads(answer_body)["error"]["code"] == "unauthenticated"
    assert not await pool.fetchval("SELECT count(*) FROM outbound_messages WHERE subject = $1",
                                   subject)
    assert not [data for _, _, data in smtp_server[0].received if subject.encode() in data]
