"""One stats answer is one snapshot of the log, however many statements it takes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey, get_json

HOUR = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
# An event with the rule "hold", at a second of HOUR: every event counts once in the
# totals and once for the rule.
INSERT = """
INSERT INTO audit_events (event_id, time, instance, message_uid, sender, recipients, size,
    action, rules, changes, policy_hash, duration_ms)
VALUES (gen_random_uuid(), $1::timestamptz + random() * interval '1 hour', 'mx', 'u',
    'a@example.com', '{b@example.org}', 100, 'quarantine', '{hold}', '[]', 'h', 1.5)
"""
WRITES_MAX = 5000
WRITING_SECONDS = 20.0
ANSWERS = 60


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


async def _write(database_url: str, stop: asyncio.Event) -> int:
    """Events, one a commit, until ``stop`` (bounded in count and time)."""
    conn = await connect(database_url)
    written, end = 0, time.monotonic() + WRITING_SECONDS
    try:
        while not stop.is_set() and written < WRITES_MAX and time.monotonic() < end:
            await conn.execute(INSERT, HOUR)
            written += 1
    finally:
        await conn.close()
    return written


async def test_the_totals_and_the_top_rules_agree_while_events_are_written(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str
) -> None:
    """The series and the top rules were two statements, each of its own snapshot (READ
    COMMITTED): an event committed between them was in the rules' count and not in the
    totals, so a dashboard's numbers did not add up while mail came in."""
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", HOUR)
    finally:
        await conn.close()
    key = await mint_key(Role.AUDITOR)
    stop = asyncio.Event()
    writer = asyncio.create_task(_write(database_url, stop))
    try:
        for _ in range(ANSWERS):
            status, stats = await get_json(admin_client, key, "/api/v1/stats",
                                           since=HOUR.isoformat(),
                                           until=(HOUR + dt.timedelta(hours=1)).isoformat())
            assert status == 200, stats
            held = sum(stats["totals"].values())
            assert stats["top_rules"] == ([{"rule": "hold", "count": held}] if held else [])
    finally:
        stop.set()
        assert await writer > 0
