"""Stats by an analyst's own days, across a DST change, adding up to the search."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.audit_queries import bucket_starts
from postwarden_store import connect
from tests.admin_api.audit_seed import seeded_auditor
from tests.fixtures.adminapp import MintKey, get_json

# Europe/Berlin leaves summer time at 2026-10-25T01:00Z: that local day has 25 hours.
FIRST = dt.datetime(2026, 10, 23, 20, 0, tzinfo=dt.UTC)
HOURS = 78  # to 2026-10-27T01:00Z
INSERT = """
INSERT INTO audit_events (event_id, time, instance, message_uid, sender, recipients, size,
    action, rules, changes, policy_hash, duration_ms)
SELECT gen_random_uuid(), $1::timestamptz + n * interval '1 hour', 'mx' || n % 3, 'u' || n,
    'a@example.com', '{b@example.org}', 100, 'quarantine', '{hold}', '[]', 'h', 1.5
FROM generate_series(0, $2 - 1) AS n
"""
LOCAL_DAYS = {"since": "2026-10-24T00:00:00+02:00", "until": "2026-10-27T00:00:00+01:00"}


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    """An event an hour from FIRST on, every one of them held."""
    async def seed(conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT audit_ensure_partition($1)", FIRST)
        await conn.execute(INSERT, FIRST, HOURS)

    return await seeded_auditor(mint_key, database_url, seed)


async def _search_count(client: TestClient[Any, Any], key: str, **params: str) -> int:
    count, cursor = 0, ""
    while True:
        status, body = await get_json(client, key, "/api/v1/audit", limit="10", cursor=cursor,
                                  **params)
        assert status == 200, body
        count += len(body["events"])
        if body["next_cursor"] is None:
            return count
        cursor = body["next_cursor"]


async def test_days_of_a_time_zone_across_dst_add_up_to_the_search(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/stats", bucket="day",
                              tz="Europe/Berlin", **LOCAL_DAYS)
    assert status == 200, body
    assert body["tz"] == "Europe/Berlin"
    assert body["series"] == [
        {"start": "2026-10-24T00:00:00+02:00", "counts": {"quarantine": 24}},
        {"start": "2026-10-25T00:00:00+02:00", "counts": {"quarantine": 25}},
        {"start": "2026-10-26T00:00:00+01:00", "counts": {"quarantine": 24}},
    ]
    searched = await _search_count(admin_client, auditor, action="quarantine", **LOCAL_DAYS)
    assert body["totals"] == {"quarantine": searched} == {"quarantine": 73}
    assert body["top_rules"] == [{"rule": "hold", "count": 73}]


async def test_utc_days_stay_the_default(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/stats", bucket="day",
                              since="2026-10-24T00:00:00Z", until="2026-10-26T00:00:00Z")
    assert status == 200, body
    assert body["series"] == [
        {"start": "2026-10-24T00:00:00+00:00", "counts": {"quarantine": 24}},
        {"start": "2026-10-25T00:00:00+00:00", "counts": {"quarantine": 24}},
    ]


# A right/ zone (tzdata's leap-second variant) read as December 2026 at +02:00 in Berlin.
@pytest.mark.parametrize("zone", ["CEST", "europe/berlin", "../../etc/passwd", "",
                                  "right/Europe/Berlin"])
async def test_a_zone_that_is_no_iana_name_is_refused(
    admin_client: TestClient[Any, Any], auditor: str, zone: str
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/stats", tz=zone)
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "tz", "message": "expected an IANA time zone such as Europe/Berlin"}]


# Australia/Lord_Howe moves its clocks by 30 minutes: forward at 2026-10-03T15:30Z (02:00
# +10:30 becomes 02:30 +11:00), back at 2027-04-03T15:00Z (02:00 +11:00 becomes 01:30
# +10:30). A bucket starts at its first instant, and holds the events of its hour.
LORD_HOWE_HOURS = [
    ("2026-10-03T14:30:00Z", "2026-10-03T16:30:00Z",
     ["2026-10-03T14:40:00Z", "2026-10-03T15:10:00Z", "2026-10-03T15:40:00Z",
      "2026-10-03T16:10:00Z"],
     [("2026-10-04T01:00:00+10:30", 2), ("2026-10-04T02:30:00+11:00", 1),
      ("2026-10-04T03:00:00+11:00", 1)]),
    ("2027-04-03T14:00:00Z", "2027-04-03T16:00:00Z",
     ["2027-04-03T14:10:00Z", "2027-04-03T14:40:00Z", "2027-04-03T15:10:00Z",
      "2027-04-03T15:40:00Z"],
     [("2027-04-04T01:00:00+11:00", 2), ("2027-04-04T01:30:00+10:30", 1),
      ("2027-04-04T02:00:00+10:30", 1)]),
]


@pytest.mark.parametrize("case", LORD_HOWE_HOURS)
async def test_hours_of_a_zone_moving_its_clocks_by_half_an_hour(
    admin_client: TestClient[Any, Any], auditor: str, database_url: str,
    case: tuple[str, str, list[str], list[tuple[str, int]]]
) -> None:
    since, until, times, buckets = case
    conn = await connect(database_url)
    try:
        for time in times:
            when = dt.datetime.fromisoformat(time)
            await conn.execute("SELECT audit_ensure_partition($1)", when)
            await conn.execute(INSERT, when, 1)
    finally:
        await conn.close()
    status, body = await get_json(admin_client, auditor, "/api/v1/stats",
                                  tz="Australia/Lord_Howe", since=since, until=until)
    assert status == 200, body
    assert body["series"] == [{"start": start, "counts": {"quarantine": n}}
                              for start, n in buckets]


def test_buckets_of_a_range_given_with_an_odd_offset_are_the_zones() -> None:
    since = dt.datetime.fromisoformat("2026-10-24T00:07:00+05:53")
    starts = bucket_starts(since, since + dt.timedelta(hours=2), "hour", ZoneInfo("UTC"))
    assert [start.isoformat() for start in starts] == [
        "2026-10-23T18:00:00+00:00", "2026-10-23T19:00:00+00:00", "2026-10-23T20:00:00+00:00"]
