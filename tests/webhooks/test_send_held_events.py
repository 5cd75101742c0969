"""send.held: a message Postfix put in its hold queue tells the client so (migration 0032),
send.released that an administrator let it out (0033), and every other line about a whole
message reaches it through the recipients it settles.

Postfix's lines are parsed as the follower parses them, and applied as one poll applies
them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import asyncpg
import pytest

from postwarden_admin_api.send.deliverylines import DeliveryEvent
from tests.fixtures.adminapp import bearer
from tests.send_api.test_maillog import WHOLE, by_milter, delivery

from .conftest import Start, StubDns, hook_url
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

RECIPIENT = "r@example.org"


def about_message(postfix_line: str, queue_id: str) -> DeliveryEvent:
    """What the follower reads in Postfix's line about a whole message, for ``queue_id``."""
    event = delivery(postfix_line)
    assert event is not None
    return dataclasses.replace(event, queue_id=queue_id)


def held(queue_id: str) -> DeliveryEvent:
    return about_message(by_milter("hold"), queue_id)


def by_postsuper(action: str, queue_id: str) -> DeliveryEvent:
    """postsuper's line: what an administrator did to the message."""
    return about_message(WHOLE.format(program="postsuper") + action, queue_id)


def deleted(queue_id: str) -> DeliveryEvent:
    """An administrator deleted it (from the hold queue, say)."""
    return by_postsuper("removed", queue_id)


def placed_on_hold(queue_id: str) -> DeliveryEvent:
    return by_postsuper("placed on hold", queue_id)


def released(queue_id: str) -> DeliveryEvent:
    return by_postsuper("released from hold", queue_id)


def discarded(queue_id: str) -> DeliveryEvent:
    return about_message(by_milter("discard"), queue_id)


def delivered(queue_id: str) -> DeliveryEvent:
    return line(queue_id, RECIPIENT, "delivered")


HELD_DETAIL = "held in Postfix's hold queue by an administrator"
RELEASED_DETAIL = "released from Postfix's hold queue by an administrator"


async def test_an_operator_subscribes_an_endpoint_to_send_held(start: Start,
                                                               admin_key: str) -> None:
    client = await start()
    document = await (await client.get("/api/v1/openapi.json")).json()
    events = document["components"]["schemas"]["NewWebhook"]["properties"]["events"]
    assert "send.held" in events["items"]["enum"]
    response = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "held", "url": "https://hooks.example.com/in", "events": ["send.held"],
        "secret": generate_secret()})
    assert response.status == 201, await response.text()
    assert (await response.json())["events"] == ["send.held"]


async def test_a_held_message_raises_send_held_for_its_subscribers_only(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    async with pool.acquire() as conn:
        wanting = await add_endpoint(conn, "held", hook_url(receiver), ["send.held"],
                                     generate_secret())
        others = await add_endpoint(conn, "others", hook_url(receiver), SEND_EVENTS,
                                    generate_secret())
    queue_id = new_queue_id()
    message = await sent(pool, RECIPIENT, metadata={"order_id": "A-7"})
    await relay(pool, message, queued(queue_id))
    await one_poll(pool, held(queue_id))

    raised = await pool.fetch(
        "SELECT e.type, d.endpoint_id FROM webhook_deliveries d "
        "JOIN webhook_events e ON e.id = d.event_id ORDER BY d.id")
    assert [tuple(r) for r in raised] == [("send.queued", others), ("send.held", wanting)]
    [body] = [b for b in await received(pool, receiver, tls, dns)
              if b["type"] == "send.held"]
    data = body["data"]
    event = await pool.fetchrow("SELECT id, detail FROM outbound_events "
                                "WHERE message_id = $1 AND event = 'held'", message)
    assert (data["id"], data["queue_id"], data["recipient"]) == (str(message), queue_id, None)
    assert data["detail"] == event["detail"] == "held in Postfix's hold queue by a milter"
    assert data["sequence"] == event["id"]
    assert data["metadata"] == {"order_id": "A-7"}
    # A hold settles no recipient: what the message's GET answers.
    assert data["status"] == "relayed" == await pool.fetchval(
        "SELECT status FROM outbound_messages WHERE id = $1", message)


@pytest.mark.parametrize(
    ("lines", "told"),
    [
        pytest.param(
            [held, deleted],
            [("send.held", None, "relayed", "held in Postfix's hold queue by a milter"),
             ("send.failed", RECIPIENT, "failed",
              "deleted from Postfix's queue before it was delivered here")],
            id="held-then-deleted"),
        pytest.param(
            [held, released, delivered],
            [("send.held", None, "relayed", "held in Postfix's hold queue by a milter"),
             ("send.released", None, "relayed", RELEASED_DETAIL),
             ("send.delivered", RECIPIENT, "delivered", "delivered by the test")],
            id="held-then-released"),
        pytest.param(
            [discarded],
            [("send.failed", RECIPIENT, "failed", "discarded by a milter")],
            id="discarded"),
    ],
)
async def test_a_client_hears_how_a_stopped_message_ends(  # noqa: PLR0917 - fixtures, table
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
    lines: list[Callable[[str], DeliveryEvent]], told: list[tuple[str, str | None, str, str]],
) -> None:
    """Each line in a poll of its own, as Postfix logs them apart; expired, the other
    line about a whole message, is in test_send_events."""
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver),
                           [*SEND_EVENTS, "send.held", "send.released"], generate_secret())
    queue_id = new_queue_id()
    message = await sent(pool, RECIPIENT)
    await relay(pool, message, queued(queue_id))
    for make in lines:
        await one_poll(pool, make(queue_id))
    bodies = sorted(await received(pool, receiver, tls, dns),
                    key=lambda b: b["data"]["sequence"])
    assert [(b["type"], b["data"]["recipient"], b["data"]["status"], b["data"]["detail"])
            for b in bodies[1:]] == told
    assert bodies[0]["type"] == "send.queued"


async def test_an_administrators_hold_and_release_reach_the_timeline_and_subscribers(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    """postsuper -h, then -H, then the delivery: an endpoint that did not subscribe to
    send.released hears nothing of the release."""
    async with pool.acquire() as conn:
        wanting = await add_endpoint(conn, "released", hook_url(receiver),
                                     ["send.held", "send.released"], generate_secret())
        others = await add_endpoint(conn, "others", hook_url(receiver),
                                    [*SEND_EVENTS, "send.held"], generate_secret())
    queue_id = new_queue_id()
    message = await sent(pool, RECIPIENT)
    await relay(pool, message, queued(queue_id))
    for make in (placed_on_hold, released, delivered):
        await one_poll(pool, make(queue_id))

    timeline = await pool.fetch("SELECT event, recipient, detail FROM outbound_events "
                                "WHERE message_id = $1 AND event <> 'accepted' ORDER BY id",
                                message)
    assert [tuple(e) for e in timeline] == [
        ("relayed", None, queue_id), ("held", None, HELD_DETAIL),
        ("released", None, RELEASED_DETAIL),
        ("delivered", RECIPIENT, "delivered by the test")]
    heard = await pool.fetch(
        "SELECT d.endpoint_id, array_agg(e.type ORDER BY e.id) AS types "
        "FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "
        "GROUP BY d.endpoint_id")
    assert {r["endpoint_id"]: r["types"] for r in heard} == {
        wanting: ["send.held", "send.released"],
        others: ["send.queued", "send.held", "send.delivered"]}
    [body] = [b for b in await received(pool, receiver, tls, dns)
              if b["type"] == "send.released"]
    event_id = await pool.fetchval("SELECT id FROM outbound_events "
                                   "WHERE message_id = $1 AND event = 'released'", message)
    assert (body["data"]["recipient"], body["data"]["status"], body["data"]["detail"],
            body["data"]["sequence"]) == (None, "relayed", RELEASED_DETAIL, event_id)
    # The release settles nothing: the delivery does, as before.
    assert await pool.fetchval("SELECT status FROM outbound_messages WHERE id = $1",
                               message) == "delivered"
