"""A key revoked while its request's body still comes in sends nothing (migration
0036): the key was checked at the request's admission only, and a holder of a leaked key
could open requests before the revocation and finish them after it. A revocation waits
for a send already storing its message (migration 0044)."""

from __future__ import annotations

import asyncio
import datetime as dt
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


async def test_a_revocation_answers_only_after_a_send_it_did_not_stop(
    client: Client, sender: dict[str, str], pool: asyncpg.Pool,
    smtp_server: tuple[Scripted, int],
) -> None:
    """A send whose key was checked live and is still storing its message finishes before
    the revocation does: once an admin is told the key is revoked, no message of it is
    stored any more. (The check took no lock: a revocation answered in between, and the
    message was stored and sent after it.)"""
    key_id = sender["Authorization"].split("_")[1]
    day = dt.datetime.now(dt.UTC).date()
    days = [day + dt.timedelta(days=n) for n in (-1, 0, 1)]  # whatever the enqueue takes
    await pool.execute("INSERT INTO outbound_daily_usage (key_id, day, messages, recipients) "
                       "SELECT $1, d, 0, 0 FROM unnest($2::date[]) d", key_id, days)
    async with pool.acquire() as holder, holder.transaction():
        # The enqueue's last step waits on this lock, after its check of the key.
        await holder.execute("SELECT FROM outbound_daily_usage WHERE key_id = $1 FOR UPDATE",
                             key_id)
        send = asyncio.ensure_future(client.post("/api/v1/send-email", json=body(),
                                                 headers=sender))
        for _ in range(200):
            if await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
                                   " = 'Lock' AND query LIKE '%send_enqueue_flushed%'"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the send did not reach its enqueue within 10 s")
        revoke = asyncio.ensure_future(pool.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", key_id))
        await asyncio.wait([revoke], timeout=1.0)
        revoked_first = revoke.done()
    answer = await send
    await revoke
    assert not (revoked_first and answer.status == 202), (
        "the revocation was answered, then the message was stored")
