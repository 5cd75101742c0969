"""One audit event is found by its id through an index on each partition, not by reading
each partition whole (the primary key, (time, event_id), cannot be searched by id)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from postwarden_admin_api.audit_queries import SELECT_ONE
from postwarden_store import connect

pytestmark = pytest.mark.postgres

# Partitions made after the migration ran: the index reaches them too.
MONTHS = (dt.datetime(2026, 8, 1, tzinfo=dt.UTC), dt.datetime(2026, 9, 1, tzinfo=dt.UTC),
          dt.datetime(2026, 10, 1, tzinfo=dt.UTC))
FILLED = {f"audit_events_{m:%Y%m}" for m in MONTHS}
# Rows enough in each month that reading its partition whole costs more than an index
# probe, so the planner's choice shows which indexes there are.
FILL = """
INSERT INTO audit_events (event_id, time, instance, message_uid, sender, recipients, size,
    action, rules, changes, policy_hash, duration_ms)
SELECT gen_random_uuid(), $1::timestamptz + g * interval '4 minutes', 'mx1', 'uid' || g,
       'alice@example.org', ARRAY['bob@example.net'], 100, 'accept', ARRAY[]::text[],
       '[]', 'h', 1.0
FROM generate_series(1, 30000) AS g
"""
# partition -> its part of the index on event_id
EVENT_ID_INDEXES = """
SELECT t.indrelid::regclass::text, i.inhrelid::regclass::text
FROM pg_inherits i JOIN pg_index t ON t.indexrelid = i.inhrelid
WHERE i.inhparent = to_regclass('audit_events_event_id')
"""
PARTITIONS = ("SELECT inhrelid::regclass::text FROM pg_inherits "
              "WHERE inhparent = 'audit_events'::regclass")


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_one_event_is_read_through_the_event_id_index(
    fresh_database_url: str, mode: str
) -> None:
    conn = await connect(fresh_database_url)
    try:
        for month in MONTHS:
            await conn.execute("SELECT audit_ensure_partition($1)", month)
        await conn.execute(FILL, MONTHS[0])
        await conn.execute("ANALYZE audit_events")
        index_of = dict(await conn.fetch(EVENT_ID_INDEXES))
        event_id = await conn.fetchval("SELECT event_id FROM audit_events ORDER BY time LIMIT 1")
        # A prepared statement is planned for its values at first, later perhaps generically.
        await conn.execute(f"SET plan_cache_mode = {mode}")
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + SELECT_ONE, event_id)
        nodes = list(_nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]))
        # An empty partition (this month's, made by the migrations) costs nothing to
        # read whole; each one holding rows is probed through its event_id index.
        probes = {n["Relation Name"]: n for n in nodes if n.get("Relation Name") in FILLED}
        assert set(probes) == FILLED
        for name, probe in probes.items():
            assert (probe["Node Type"], probe.get("Index Name")) == (
                "Index Scan", index_of.get(name)), probe
            assert probe["Index Cond"].startswith("(event_id = "), probe
        assert set(index_of) == {r[0] for r in await conn.fetch(PARTITIONS)}
        row = await conn.fetchrow(SELECT_ONE, event_id)
        assert row is not None and row["event_id"] == event_id
    finally:
        await conn.close()
