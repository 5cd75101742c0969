"""An endpoint's deliveries page by page: a page before a delivery id reads only its
rows, however PostgreSQL caches the statement's plan (.sqlwhere). With "$n IS NULL OR
d.id < $n" a generic plan read the endpoint's deliveries from the newest on."""

from __future__ import annotations

import asyncpg
import pytest

from postwarden_admin_api.webhooks.routes import deliveries_sql
from tests.fixtures.plans import generic_plan, rows_read

pytestmark = pytest.mark.postgres


async def test_a_page_of_old_deliveries_reads_only_its_rows(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("""
            INSERT INTO webhook_endpoints (id, name, url, url_origin, kind)
              VALUES (1, 'hook', 'https://a.example/h', 'https://a.example', 'webhook');
            INSERT INTO webhook_events (id, type, payload) VALUES (1, 't', '{}');
            INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status)
              SELECT g, 1, 1, 'delivered' FROM generate_series(1, 4000) g;
            ANALYZE webhook_deliveries""")
        for status in (None, "delivered"):
            sql, params = deliveries_sql(1, status, 100, 10)
            page = await conn.fetch(sql, *params)
            plan = await generic_plan(conn, sql, params)
            assert [row["id"] for row in page] == list(range(99, 89, -1))
            assert rows_read(plan, ("webhook_deliveries",)) <= 10, plan  # not the 3,900 newer
    finally:
        await conn.close()
