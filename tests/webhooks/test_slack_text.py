"""A Slack endpoint's message says who an event is about: a send.* event its recipient
(the data has ``recipient``, not the milter's ``recipients``), policy.load_failed the
instance that refused the policy set (without it, the message named no milter)."""

from __future__ import annotations

import json
import uuid

import pytest

from postwarden_admin_api.webhooks import EventType, raise_event
from postwarden_store import connect
from tests.fixtures.adminapp import bearer

from .conftest import RECEIVER_NAME, Start
from .receiver import Receiver, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of the test's own: it compares every message sent. Taken first, so it
    is dropped after the service stops."""
    return fresh_database_url


async def _raise_bounce_and_load_failure(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        message = uuid.uuid4()
        await conn.execute(
            "INSERT INTO outbound_messages (id, key_id, message_id, sender, subject,"
            " recipient_count, size, queue_id) VALUES ($1, 'k1', '<s1@x>', 'app@example.org',"
            " 'private subject', 1, 100, '5QID')", message)
        await conn.execute("INSERT INTO outbound_events (message_id, recipient, event)"
                           " VALUES ($1, 'r@example.net', 'bounced')", message)
        await raise_event(conn, EventType.POLICY_LOAD_FAILED,
                          {"instance": "mx7", "trigger": "signal", "sources": ["in.yaml"],
                           "error": "in.yaml:3:1: unknown key"})
    finally:
        await conn.close()


async def test_slack_text_names_the_recipient_and_the_instance(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    client = await start()
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "chat", "kind": "slack", "url": f"https://{RECEIVER_NAME}:{receiver.port}/T/B/x",
        "events": ["send.bounced", "policy.load_failed"]})
    assert created.status == 201, await created.text()
    await _raise_bounce_and_load_failure(database_url)

    assert await wait_for(lambda: len(receiver.delivered()) == 2)
    texts = sorted(json.loads(got.body)["text"] for got in receiver.requests)
    assert texts == [
        "postwarden: policy.load_failed · instance mx7",
        "postwarden: send.bounced · queue id 5QID · from app@example.org · to r@example.net"
        " · status queued",
    ]
