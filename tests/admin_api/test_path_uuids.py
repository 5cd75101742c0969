"""A UUID in a path is one only as the service writes it (upper case aside, as RFC 9562
reads it): braces, a urn:uuid: prefix or hyphens moved or left out are no resource's
path, as a numeric id's leading zeros are not."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_store import connect
from tests.fixtures.adminapp import bearer

WHEN = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


async def _stored(database_url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """An audit event's id and a sent message's."""
    event, message = uuid.uuid4(), uuid.uuid4()
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", WHEN)
        await conn.execute(
            "INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid,"
            " client_name, sender, recipients, subject, size, action, rules, changes,"
            " policy_hash, duration_ms) VALUES ($1, $2, 'mx1', 'Q1', 'u1', 'c', 'a@b.example',"
            " '{}', 's', 1, 'accept', '{}', '[]', 'h', 1)", event, WHEN)
        await conn.execute(
            "INSERT INTO outbound_messages (id, key_id, message_id, sender, subject,"
            " recipient_count, size, queue_id) VALUES ($1, 'k1', '<s1@x>', 'app@example.org',"
            " 's', 1, 100, '5QID')", message)
    finally:
        await conn.close()
    return event, message


SPELLINGS = {
    "braces": lambda u: f"{{{u}}}",
    "urn": lambda u: f"urn:uuid:{u}",
    "no-hyphens": lambda u: u.hex,
    "hyphens-moved": lambda u: f"{u.hex[:4]}-{u.hex[4:]}",
}


@pytest.mark.parametrize("spelling", SPELLINGS.values(), ids=SPELLINGS.keys())
async def test_a_uuid_written_otherwise_is_not_found(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str, spelling: Any
) -> None:
    event, message = await _stored(database_url)
    for path in (f"/api/v1/audit/{event}", f"/api/v1/messages/{message}",
                 f"/api/v1/audit/{str(event).upper()}"):
        response = await admin_client.get(path, headers=bearer(admin_key))
        assert response.status == 200, (path, await response.text())
    for path in (f"/api/v1/audit/{spelling(event)}", f"/api/v1/messages/{spelling(message)}"):
        response = await admin_client.get(path, headers=bearer(admin_key))
        # They were found: one event or message at many URLs.
        assert response.status == 404, (path, await response.text())
        assert (await response.json())["error"]["code"] == "not_found"
