"""send.* events as a client receives them through the worker: in an order it can
restore, with the status each event leaves the message in, with the request's metadata.

Messages are stored and relayed as the relay stores them, and Postfix's lines applied
as the maillog follower applies one poll (one ``maillog_apply`` statement).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.send.deliveryapply import apply_events, note_arrivals
from postwarden_admin_api.send.deliverylines import DeliveryEvent
from postwarden_admin_api.send.maillog import NEXT_READ
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.relayoutcomes import Claimed, RelayConfig, record
from postwarden_admin_api.send.submit import Outcome, SubmitResult
from tests.fixtures.submissions import ROOMY, submission

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for
from .support import add_endpoint, generate_secret, running_worker, worker_options

pytestmark = pytest.mark.postgres

SEND_EVENTS = ["send.queued", "send.delivered", "send.deferred", "send.bounced", "send.failed"]
HOST = "mx.example.test"
CONFIG = RelayConfig("127.0.0.1", 25, 3, 1.0)


async def sent(pool: asyncpg.Pool, *recipients: str, metadata: dict[str, Any] | None = None,
               ) -> uuid.UUID:
    """A message accepted from the key ``k1`` and stored as its relay stores it."""
    async with pool.acquire() as conn:
        accepted = await enqueue(conn, submission("k1", *recipients, metadata=metadata), ROOMY)
    return accepted.id


async def relay(pool: asyncpg.Pool, message: uuid.UUID, result: SubmitResult) -> None:
    """Store ``result`` as the relay does, under a claim of the outbox row (a 4xx or 5xx is
    stored only while the claim is the row's last)."""
    async with pool.acquire() as conn:
        attempts = await conn.fetchval("UPDATE outbox SET attempts = attempts + 1 "
                                       "WHERE message_id = $1 RETURNING attempts", message)
        await record(conn, CONFIG, Claimed(message, "app@example.com", [], b"",
                                           attempts=attempts), result)


def queued(queue_id: str) -> SubmitResult:
    return SubmitResult(Outcome.QUEUED, f"250 queued as {queue_id}", queue_id)


async def one_poll(pool: asyncpg.Pool, *events: DeliveryEvent) -> None:
    """Postfix's lines applied together, in log order, as one poll of the log to its end
    applies them (past the arrival of every message relayed before it)."""
    async with pool.acquire() as conn:
        await note_arrivals(conn, HOST, [], await conn.fetchval(NEXT_READ))
        applied = await apply_events(conn, HOST, list(events))
    assert applied.recorded == set(range(len(events)))


def line(queue_id: str, recipient: str | None, status: str) -> DeliveryEvent:
    dsn = {"delivered": "2.0.0", "deferred": "4.4.1", "bounced": "5.1.1"}.get(status, "")
    return DeliveryEvent(queue_id, recipient, status, dsn, f"{status} by the test")


def new_queue_id() -> str:
    return "Q" + uuid.uuid4().hex[:10].upper()


async def received(pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
                   **options: Any) -> list[dict[str, Any]]:
    """The bodies the receiver accepted, in the order they came, once every event raised
    is delivered."""
    count = await pool.fetchval("SELECT count(*) FROM webhook_deliveries")
    async with running_worker(pool, worker_options(tls, dns, **options)):
        assert await wait_for(lambda: len(receiver.delivered()) >= count)
    return [json.loads(r.body) for r in receiver.delivered()]


async def test_a_recipients_events_of_one_poll_can_be_put_in_order(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    """deferred then delivered in one poll: the deferred delivery fails once and arrives
    last; ``sequence`` restores the order, and each event has its own time."""
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver), ["send.deferred", "send.delivered"],
                           generate_secret())
    queue_id, recipient = new_queue_id(), "r@example.org"
    message = await sent(pool, recipient)
    await relay(pool, message, queued(queue_id))
    await one_poll(pool, line(queue_id, recipient, "deferred"),
                   line(queue_id, recipient, "delivered"))
    # One at a time, oldest first: the deferred one fails, then the delivered one goes.
    receiver.statuses = [500]
    bodies = await received(pool, receiver, tls, dns, batch_size=1)
    assert [b["type"] for b in bodies] == ["send.delivered", "send.deferred"]
    ordered = sorted(bodies, key=lambda b: b["data"]["sequence"])
    assert [b["type"] for b in ordered] == ["send.deferred", "send.delivered"]
    deferred, delivered = (b["data"] for b in ordered)
    assert deferred["sequence"] < delivered["sequence"]
    assert dt.datetime.fromisoformat(deferred["time"]) < dt.datetime.fromisoformat(
        delivered["time"])


async def test_each_event_says_the_status_it_leaves_the_message_in(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    """The event that settles a message says so, from the log as from the relay."""
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver), SEND_EVENTS, generate_secret())
    queue_id, kept, gone, late = new_queue_id(), "kept@example.org", "gone@example.org", (
        "late@example.org")
    logged = await sent(pool, kept, gone)
    await relay(pool, logged, queued(queue_id))
    await one_poll(pool, line(queue_id, kept, "deferred"), line(queue_id, kept, "delivered"),
                   line(queue_id, gone, "bounced"))
    expired_id = new_queue_id()
    expired = await sent(pool, late)
    await relay(pool, expired, queued(expired_id))
    await one_poll(pool, line(expired_id, late, "deferred"), line(expired_id, None, "expired"))
    refused = await sent(pool, "refused@example.org")
    await relay(pool, refused, SubmitResult(Outcome.FAILED, "554 5.7.1 refused by the test"))

    bodies = await received(pool, receiver, tls, dns)
    statuses: dict[str, list[tuple[str, str | None, str]]] = {}
    for body in sorted(bodies, key=lambda b: b["data"]["sequence"]):
        data = body["data"]
        statuses.setdefault(data["id"], []).append((body["type"], data["recipient"],
                                                    data["status"]))
    assert statuses[str(logged)] == [
        ("send.queued", None, "relayed"),
        ("send.deferred", kept, "relayed"),
        ("send.delivered", kept, "relayed"),
        ("send.bounced", gone, "partially_delivered"),
    ]
    assert statuses[str(expired)] == [
        ("send.queued", None, "relayed"),
        ("send.deferred", late, "relayed"),
        ("send.bounced", late, "failed"),
    ]
    assert statuses[str(refused)] == [
        ("send.failed", "refused@example.org", "failed"),
        ("send.failed", None, "failed"),
    ]
    # What the message's GET answers once its last event is raised.
    for message, events in statuses.items():
        status = await pool.fetchval("SELECT status FROM outbound_messages WHERE id = $1",
                                     uuid.UUID(message))
        assert events[-1][2] == status


async def test_send_events_carry_the_requests_metadata(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    metadata = {"order_id": "A-1042", "attempt": 2, "gift": False}
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver), ["send.queued"], generate_secret())
    message = await sent(pool, "r@example.org", metadata=metadata)
    await relay(pool, message, queued(new_queue_id()))
    [body] = await received(pool, receiver, tls, dns)
    assert body["data"]["id"] == str(message)
    assert body["data"]["metadata"] == metadata


async def test_an_alias_members_line_that_changes_nothing_raises_nothing(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    """Once one member of an alias has it, the recipient stays delivered (README), yet a
    later member's bounce or deferral raised send.bounced or send.deferred for it: a
    receiver that keeps each recipient's highest sequence, as the docs say, held it
    bounced while the API said delivered. The timeline still shows every line."""
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver), SEND_EVENTS, generate_secret())
    queue_id, alias = new_queue_id(), "team@example.org"
    message = await sent(pool, alias)
    await relay(pool, message, queued(queue_id))
    member = [dataclasses.replace(line(queue_id, alias, status), rewritten=True)
              for status in ("delivered", "deferred", "bounced")]
    await one_poll(pool, *member)

    bodies = sorted(await received(pool, receiver, tls, dns),
                    key=lambda b: b["data"]["sequence"])
    assert [(b["type"], b["data"]["recipient"]) for b in bodies] == [
        ("send.queued", None), ("send.delivered", alias)]
    timeline = await pool.fetch("SELECT event FROM outbound_events WHERE message_id = $1"
                                " AND recipient IS NOT NULL ORDER BY id", message)
    assert [row["event"] for row in timeline] == ["delivered", "deferred", "bounced"]
    assert await pool.fetchval("SELECT status FROM outbound_recipients WHERE message_id = $1",
                               message) == "delivered"
