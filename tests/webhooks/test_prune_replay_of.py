"""Deleting deliveries (pruning, an endpoint deleted) finds their replays by index: each
row deleted read the whole table for the replays whose replay_of it is (100,000 old
deliveries took 8 minutes to prune)."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from postwarden_admin_api.webhooks.history import prune_webhook_history

pytestmark = pytest.mark.postgres
OLD = 2000
SCANS = """
SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'webhook_deliveries'
"""


async def test_pruning_does_not_read_the_table_for_each_delivery(
    fresh_database_url: str,
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("""
            INSERT INTO webhook_endpoints (id, name, url, url_origin, kind)
            VALUES (1, 'old', 'https://a.example/h', 'https://a.example', 'webhook')""")
        await conn.execute("""
            INSERT INTO webhook_events (type, payload, created_at)
            SELECT 't', '{}', now() - interval '40 days' FROM generate_series(1, $1)""", OLD)
        await conn.execute("""
            INSERT INTO webhook_deliveries (event_id, endpoint_id, status, created_at)
            SELECT id, 1, 'dead', now() - interval '40 days' FROM webhook_events""")
        # A replay of the first, kept: pruning its original clears its replay_of.
        await conn.execute("""
            INSERT INTO webhook_deliveries (event_id, endpoint_id, replay_of)
            SELECT event_id, 1, id FROM webhook_deliveries ORDER BY id LIMIT 1""")
        await conn.execute("ANALYZE webhook_deliveries")
        async with conn.transaction():
            before = await conn.fetchval(SCANS)
            assert await prune_webhook_history(conn, dt.timedelta(days=30)) == OLD * 2 - 1
            scans = await conn.fetchval(SCANS) - before
        assert scans < 10, scans  # about one per delivery deleted
        assert await conn.fetchval("SELECT replay_of FROM webhook_deliveries") is None
    finally:
        await conn.close()
