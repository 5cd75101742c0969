"""The send API's message search on a million sent messages, as the service runs it.

    .venv/bin/python bench/send_queries.py [--messages N] [--database-url URL]

Without --database-url a throwaway PostgreSQL cluster is started (and removed).
Messages come from generate_series spread over three months, one to three
recipients each, from 50 senders of 20 key owners, each tagged with its kind and
an order number; every search is the exact call the API makes
(postwarden_admin_api.send.queries.search_messages) on one connection, whose
prepared statements asyncpg keeps as the service's pool does.
PostgreSQL plans a kept statement anew for its first five runs, then may switch
to one generic plan for all parameters: each search is run a dozen times, and
the first (cold), the median of the rest and the slowest of the rest are
printed, in milliseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import run_on_database

from postwarden_admin_api.send.queries import MessageFilter, search_messages
from postwarden_store import apply_migrations, connect

END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=90)
RUNS = 12
MESSAGES = """
INSERT INTO outbound_messages (id, key_id, message_id, sender, subject, recipient_count, size,
    tags, status, queue_id, created_at, updated_at)
SELECT md5(i::text)::uuid, 'key' || (i % 40), '<' || md5(i::text) || '@example.com>',
       'App' || (i % 50) || '@Example.com', 'subject ' || i, i % 3 + 1, 2000 + i % 5000,
       ARRAY[CASE WHEN i % 10 = 0 THEN 'invoice' ELSE 'notice' END, 'order-' || i],
       (ARRAY['delivered','delivered','delivered','relayed','failed'])[i % 5 + 1],
       upper(to_hex(i::bigint * 7919)),
       $1::timestamptz + (i * $2::float8) * interval '1 second',
       $1::timestamptz + (i * $2::float8) * interval '1 second'
FROM generate_series(1, $3) AS i
"""
RECIPIENTS = """
INSERT INTO outbound_recipients (message_id, address, kind, status)
SELECT md5(i::text)::uuid, 'User' || ((i * 31 + r) % 200000) || '@customer.test', 'to', 'delivered'
FROM generate_series(1, $1) AS i, generate_series(0, i % 3) AS r
"""
KEYS = """
INSERT INTO api_keys (key_id, secret_sha256, name, role, owner)
SELECT 'key' || k, sha256(k::text::bytea), 'key ' || k, 'sender', 'key' || (k % 20)
FROM generate_series(0, 39) k ORDER BY k
"""


def _cases(messages: int) -> list[tuple[str, MessageFilter]]:
    week_ago = END - dt.timedelta(days=7)
    middle = messages // 2
    return [
        ("newest page", MessageFilter()),
        ("one owner's newest page", MessageFilter(owner="key7")),
        ("by sender", MessageFilter(sender="app7@example.com")),
        ("by recipient (one of 200,000)", MessageFilter(recipient="user4242@customer.test")),
        ("by recipient, one owner", MessageFilter(owner="key3",
                                                  recipient="user4243@customer.test")),
        ("by queue id", MessageFilter(queue_id=format(middle * 7919, "X"))),
        ("by message id", MessageFilter(message_id=f"<{_md5(middle)}@example.com>")),
        ("failed, last week", MessageFilter(status="failed", since=week_ago)),
        ("by tag (one in ten)", MessageFilter(tag="invoice")),
        ("by tag (one message's)", MessageFilter(tag=f"order-{middle}")),
        ("a queue id no message has", MessageFilter(queue_id="NOSUCHID")),
        ("a sender no message has", MessageFilter(sender="nobody@example.com")),
        ("a recipient no message has", MessageFilter(recipient="nobody@customer.test")),
    ]


def _md5(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()  # noqa: S324 - as the generator's md5()


async def _run(dsn: str, messages: int) -> None:
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        began = time.perf_counter()
        await conn.execute(KEYS)
        start = END - SPAN
        await conn.execute(MESSAGES, start, SPAN.total_seconds() / messages, messages)
        await conn.execute(RECIPIENTS, messages)
        await conn.execute("VACUUM ANALYZE outbound_messages, outbound_recipients, api_keys")
        print(f"generated {messages} messages in {time.perf_counter() - began:.1f} s")
        print(f"{'search':40} {'rows':>5} {'first':>9} {'median':>9} {'slowest':>9}")
        for name, search in _cases(messages):
            times = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                page, _cursor = await search_messages(conn, search)
                times.append((time.perf_counter() - t0) * 1000)
            rest = times[1:]
            print(f"{name:40} {len(page):5d} {times[0]:9.2f} {statistics.median(rest):9.2f} "
                  f"{max(rest):9.2f}")
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    messages = max(1000, min(args.messages, 5_000_000))
    run_on_database(lambda dsn: _run(dsn, messages), args.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
