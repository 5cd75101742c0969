"""The claim reads each endpoint's due deliveries only as far as its free slots:
an endpoint at its cap with a long backlog costs the claim nothing (it read that
whole backlog at every claim, and a claim runs whenever a delivery ends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.webhooks.worker import CLAIM

pytestmark = pytest.mark.postgres
BACKLOG = 5000


def _scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if node.get("Relation Name") == "webhook_deliveries":
        yield node
    for child in node.get("Plans", []):
        yield from _scans(child)


async def test_a_capped_endpoints_backlog_is_not_read(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("""
            INSERT INTO webhook_endpoints (id, name, url, url_origin, kind) VALUES
              (1, 'hung', 'https://a.example/h', 'https://a.example', 'webhook'),
              (2, 'ok', 'https://b.example/h', 'https://b.example', 'webhook');
            INSERT INTO webhook_events (id, type, payload) VALUES (1, 't', '{}')""")
        await conn.execute("""
            INSERT INTO webhook_deliveries (event_id, endpoint_id, next_attempt_at)
            SELECT 1, 1, now() - interval '1 hour' + g * interval '1 ms'
            FROM generate_series(1, $1) g""", BACKLOG)
        await conn.execute("INSERT INTO webhook_deliveries (event_id, endpoint_id) "
                           "VALUES (1, 2), (1, 2)")
        await conn.execute("ANALYZE webhook_deliveries")
        # Endpoint 1 has its 2 in flight: only endpoint 2's deliveries are claimed.
        [[plan]] = await conn.fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM,
                                    5, 60.0, [1], [2], 2)
        claimed = await conn.fetch("SELECT endpoint_id FROM webhook_deliveries "
                                   "WHERE attempts > 0")
        read = sum(scan["Actual Rows"] * scan.get("Actual Loops", 1)
                   for scan in _scans(json.loads(plan)[0]["Plan"]))
        assert read < 50, read  # not the 5,000 of the capped endpoint
        assert [row["endpoint_id"] for row in claimed] == [2, 2]
    finally:
        await conn.close()
