"""send.* webhooks carry `logged_at` (migration 0033): when Postfix logged the line an
event comes from, whenever the service read it; null for the relay's own events."""

from __future__ import annotations

import dataclasses
import datetime as dt

import asyncpg
import pytest

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls
from .support import add_endpoint, generate_secret
from .test_send_events import (
    SEND_EVENTS,
    line,
    new_queue_id,
    one_poll,
    queued,
    received,
    relay,
    sent,
)

pytestmark = pytest.mark.postgres


async def test_send_events_say_when_postfix_logged_their_line(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    async with pool.acquire() as conn:
        await add_endpoint(conn, "all", hook_url(receiver), SEND_EVENTS, generate_secret())
    queue_id = new_queue_id()
    message = await sent(pool, "r@example.org")
    await relay(pool, message, queued(queue_id))
    logged = dt.datetime(2026, 12, 6, 9, 30, 15, 250000, dt.UTC)  # read later, at a restart
    await one_poll(pool, dataclasses.replace(line(queue_id, "r@example.org", "delivered"),
                                             logged_at=logged.timestamp()))

    bodies = {body["type"]: body["data"] for body in await received(pool, receiver, tls, dns)}
    assert bodies["send.queued"]["logged_at"] is None  # the relay's own event
    delivered = bodies["send.delivered"]
    assert dt.datetime.fromisoformat(delivered["logged_at"]) == logged
    assert dt.datetime.fromisoformat(delivered["time"]) > logged
