"""Audit search on a million rows: EXPLAIN ANALYZE of the admin API's queries.

    .venv/bin/python bench/audit_queries.py [--rows N] [--database-url URL]

Without --database-url a throwaway PostgreSQL cluster is started (and removed).
Rows come from generate_series spread over three months; every query is the
exact SQL the API runs (postwarden_admin_api.audit_queries), planned with
the same parameters; its plan and its warm execution time are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import run_on_database

from postwarden_admin_api.audit_queries import (
    SELECT_ONE,
    STATS_SERIES,
    STATS_TOP_RULES,
    bucket_starts,
    search_sql,
)
from postwarden_admin_api.cursors import Cursor
from postwarden_store import apply_migrations, connect

END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=90)
GENERATE = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, client_address,
    sender, recipients, message_id, subject, size, action, rules, changes, policy_hash,
    duration_ms)
SELECT gen_random_uuid(),
       $1::timestamptz + (i * $2::float8) * interval '1 second',
       'mx' || (i % 3),
       upper(to_hex(i::bigint * 7919)),
       'uid' || i,
       ('198.51.100.' || (i % 250 + 1))::inet,
       'user' || (i % 5000) || '@sender' || (i % 300) || '.test',
       ARRAY['rcpt' || (i % 20000) || '@example.org'],
       '<' || i || '@mail.test>',
       'subject ' || i,
       1000 + i % 50000,
       (ARRAY['accept','accept','accept','accept','reject','quarantine','tempfail'])[i % 7 + 1],
       CASE WHEN i % 10 = 0 THEN ARRAY['rule-' || (i % 40)] ELSE ARRAY[]::text[] END,
       -- One transaction in a hundred had a recipient refused at RCPT (migration 0034).
       CASE WHEN i % 100 = 0 THEN jsonb_build_array(jsonb_build_object(
           'kind', 'recipient_refused', 'recipient', 'rcpt' || (i % 19999) || '@example.org',
           'reply', '550 5.1.1 Recipient address rejected'))
       ELSE '[]'::jsonb END,
       'hash', 1.0
FROM generate_series(1, $3) AS i
"""


def _cases(rows: int, oldest: uuid.UUID) -> list[tuple[str, str, list[Any]]]:
    day_start = END - dt.timedelta(days=1)
    cases: list[tuple[str, dict[str, Any], Cursor | None]] = [
        ("newest page", {}, None),
        ("by sender", {"sender": "user42@sender42.test"}, None),
        ("by recipient", {"recipient": "rcpt77@example.org"}, None),
        ("by queue id", {"queue_id": format(rows // 2 * 7919, "X")}, None),
        ("by message id", {"message_id": f"<{rows // 3}@mail.test>"}, None),
        ("by client, one day", {"client_address": ip_network("198.51.100.9/32"),
                                "since": day_start}, None),
        ("by client network /24, one day", {"client_address": ip_network("198.51.100.0/24"),
                                            "since": day_start}, None),
        ("rejects, one day", {"action": "reject", "since": day_start}, None),
        ("by rule", {"rule": "rule-10"}, None),
        ("second page (keyset)", {}, Cursor(END - dt.timedelta(days=30), uuid.UUID(int=0))),
    ]
    built = []
    for name, filters, cursor in cases:
        sql, params = search_sql(filters, cursor, 101)
        built.append((name, sql, params))
    starts = bucket_starts(day_start, END, "hour", ZoneInfo("UTC"))
    built.append(("stats by hour, one day", STATS_SERIES, [day_start, END, starts]))
    built.append(("top rules, one day", STATS_TOP_RULES, [day_start, END, 10]))
    built.append(("one event by id (the oldest)", SELECT_ONE, [oldest]))
    return built


async def _run(dsn: str, rows: int) -> None:
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        start = END - SPAN
        for month in range(4):
            month_start = start + dt.timedelta(days=31 * month)
            await conn.execute("SELECT audit_ensure_partition($1)", month_start)
        began = time.perf_counter()
        await conn.execute(GENERATE, start, SPAN.total_seconds() / rows, rows)
        # What autovacuum does in service: statistics, and the GIN pending lists merged.
        await conn.execute("VACUUM ANALYZE audit_events")
        print(f"generated {rows} rows in {time.perf_counter() - began:.1f} s")
        oldest = await conn.fetchval("SELECT event_id FROM audit_events ORDER BY time LIMIT 1")
        for name, sql, params in _cases(rows, oldest):
            # The first run reads the pages in; the timing reported is the second (warm) one.
            text = await conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", *params)
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
            top = (json.loads(plan) if isinstance(plan, str) else plan)[0]
            print(f"\n== {name}: {top['Execution Time']:.2f} ms")
            for row in text[:12]:
                print("   ", row[0])
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    rows = max(1000, min(args.rows, 5_000_000))
    run_on_database(lambda dsn: _run(dsn, rows), args.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
