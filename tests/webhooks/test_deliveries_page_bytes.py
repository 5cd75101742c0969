"""A page of a webhook's deliveries is bounded by its count alone: a delivery is listed
without its event's payload (which copies an audit event's ``changes``, up to 128 KiB),
so 500 deliveries of events that carry large payloads stay a small page, and paging
with ``before_id`` returns every delivery once. Should the payload ever be listed, the
page would need a bound in bytes (``bodies.fill_page``), as the audit search has."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, bearer

from .test_routes import new_hook

pytestmark = pytest.mark.postgres
LIMIT = 500  # the largest page the listing gives
DELIVERY_AT_MOST = 1024  # bytes of JSON of one delivery, its longest last_error in
LARGE = "x" * (128 * 1024)
DELIVERIES = """
INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, last_attempt_at,
    last_status_code, last_error, replay_of)
SELECT $1, $2, 'dead', 10, now(), 503, $3, NULL FROM generate_series(1, $4)
"""


async def _dead_deliveries(database_url: str, endpoint_id: int, count: int) -> None:
    """``count`` dead deliveries of one event whose payload is LARGE, with an error
    longer than any the worker writes."""
    conn = await connect(database_url)
    try:
        event = await conn.fetchval(
            "INSERT INTO webhook_events (type, payload) VALUES ('message.rejected', $1) "
            "RETURNING id", {"changes": [{"kind": "note", "text": LARGE}]})
        await conn.execute(DELIVERIES, event, endpoint_id, "e" * 200, count)
    finally:
        await conn.close()


async def test_a_deliveries_page_holds_no_payload_and_pages_exactly(
    aiohttp_client: AiohttpClient, admin_settings: ServiceSettings, admin_key: str,
    database_url: str,
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(admin_settings))
    created = await client.post("/api/v1/webhooks", json=new_hook("large-payloads"),
                                headers=bearer(admin_key))
    assert created.status == 201
    endpoint_id = (await created.json())["id"]
    await _dead_deliveries(database_url, endpoint_id, LIMIT + 1)
    path = f"/api/v1/webhooks/{endpoint_id}/deliveries"
    first = await client.get(path, params={"limit": str(LIMIT)}, headers=bearer(admin_key))
    assert first.status == 200
    raw = await first.read()
    assert len(raw) < LIMIT * DELIVERY_AT_MOST
    assert b"xxxx" not in raw
    page = (await first.json())["deliveries"]
    rest = await client.get(path, params={"limit": str(LIMIT), "before_id": str(page[-1]["id"])},
                            headers=bearer(admin_key))
    ids = [d["id"] for d in page + (await rest.json())["deliveries"]]
    assert len(ids) == len(set(ids)) == LIMIT + 1
    assert ids == sorted(ids, reverse=True)
