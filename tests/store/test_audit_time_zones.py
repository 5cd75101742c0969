"""Audit partitions are UTC months whatever the session's or database's TimeZone."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest

from postwarden_store import apply_migrations, connect, create_pool, write_audit_batch
from postwarden_store.migrations import INSERT_APPLIED, available_migrations
from tests.conftest import PgServer
from tests.fixtures.postgres import create_database, drop_database
from tests.store.test_audit import make_event

pytestmark = pytest.mark.postgres

UTC = dt.UTC
# West of UTC a month's start is the evening of the month before (so +1 month
# lands a day or three early); east of UTC, daylight saving time moves it.
ZONES = ["America/New_York", "Europe/Berlin", "Asia/Tokyo"]
# The migration that made the partitions UTC months, and repairs older ones.
UTC_MONTHS = "0016_audit_utc_months_and_recipient_case"

PARTITIONS = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'audit_events'::regclass AND c.relname LIKE $1 ORDER BY 1
"""


def months(year: int) -> list[dt.datetime]:
    return [dt.datetime(year, month, 1, tzinfo=UTC) for month in range(1, 13)]


def next_month(start: dt.datetime) -> dt.datetime:
    return (start + dt.timedelta(days=32)).replace(day=1)


def utc_month_bound(start: dt.datetime) -> str:
    return (f"FOR VALUES FROM ('{start:%Y-%m-%d} 00:00:00+00') "
            f"TO ('{next_month(start):%Y-%m-%d} 00:00:00+00')")


async def partition_bounds(conn: asyncpg.Connection, year: int) -> dict[str, str]:
    """Partition name -> bound, rendered in UTC."""
    async with conn.transaction():
        await conn.execute("SET LOCAL timezone = 'UTC'")
        rows = await conn.fetch(PARTITIONS, f"audit_events_{year}%")
    return {row["relname"]: row["bound"] for row in rows}


def expected_bounds(starts: list[dt.datetime]) -> dict[str, str]:
    return {f"audit_events_{start:%Y%m}": utc_month_bound(start) for start in starts}


INSERT_ROW = """
INSERT INTO audit_events (event_id, time, instance, message_uid, sender, recipients, size,
    action, rules, changes, policy_hash, duration_ms)
VALUES (gen_random_uuid(), $1, 'mx1', 'u1', 'a@example.org', '{}', 1, $2, '{}', '[]', 'h', 1)
"""


async def insert_without_partition(
    conn: asyncpg.Connection, when: dt.datetime, action: str = "accept"
) -> None:
    """A row stored in whichever partition takes it, without audit_ensure_partition."""
    await conn.execute(INSERT_ROW, when, action)


async def local_connection(dsn: str, zone: str) -> asyncpg.Connection:
    """A plain asyncpg session in ``zone``, as psql or another client would have."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"SET timezone = '{zone}'")
    return conn


@pytest.fixture
async def database_in_zone(
    pg_server: PgServer, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A database whose default TimeZone is the test's ``zone``, migrated in it."""
    zone = request.getfixturevalue("zone")
    name = await create_database(pg_server.admin_dsn)
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f"ALTER DATABASE \"{name}\" SET timezone = '{zone}'")
    finally:
        await admin.close()
    conn = await connect(pg_server.dsn(name))
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    yield pg_server.dsn(name)
    await drop_database(pg_server.admin_dsn, name)


@pytest.mark.parametrize("zone", ZONES)
async def test_partitions_made_in_any_session_zone_are_utc_months(
    fresh_database_url: str, zone: str
) -> None:
    conn = await local_connection(fresh_database_url, zone)
    try:
        for start in [*months(2031), *months(2032)]:  # 2032 is a leap year
            await conn.execute("SELECT audit_ensure_partition($1)", start)
        for start in months(2033):  # any instant of the month names it
            await conn.execute("SELECT audit_ensure_partition($1)",
                               start + dt.timedelta(days=27, hours=23, minutes=59))
        for year in (2031, 2032, 2033):
            assert await partition_bounds(conn, year) == expected_bounds(months(year))
    finally:
        await conn.close()


@pytest.mark.parametrize("zone", ZONES)
async def test_the_first_and_last_instants_of_every_month_are_written_in_any_session_zone(
    fresh_database_url: str, zone: str
) -> None:
    instants = [instant for start in months(2031)
                for instant in (start, next_month(start) - dt.timedelta(microseconds=1))]
    conn = await local_connection(fresh_database_url, zone)
    try:
        for instant in instants:  # one batch each: a failure fails only its own
            assert (await write_audit_batch(conn, [make_event(instant)])).new == 1
        stored = await conn.fetch(
            "SELECT time, tableoid::regclass::text AS part FROM audit_events "
            "WHERE time >= $1 ORDER BY time", instants[0])
    finally:
        await conn.close()
    assert [(row["time"], row["part"]) for row in stored] == [
        (instant, f"audit_events_{instant:%Y%m}") for instant in instants]


@pytest.mark.parametrize("zone", ZONES)
async def test_a_database_made_in_a_local_zone_has_utc_months(
    database_in_zone: str, zone: str
) -> None:
    """The migration's own partition (this month's) and the writers' are UTC months."""
    now = dt.datetime.now(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    conn = await connect(database_in_zone)
    try:
        assert await conn.fetchval("SHOW timezone") == "UTC"
        may_31 = dt.datetime(2031, 5, 31, 12, tzinfo=UTC)
        assert (await write_audit_batch(conn, [make_event(may_31)])).new == 1
        assert await partition_bounds(conn, this_month.year) == expected_bounds([this_month])
        assert await partition_bounds(conn, 2031) == expected_bounds([may_31.replace(day=1)])
    finally:
        await conn.close()


@pytest.mark.parametrize("zone", ZONES)
async def test_pooled_and_single_connections_run_in_utc(database_in_zone: str, zone: str) -> None:
    plain = await asyncpg.connect(database_in_zone)
    pool = await create_pool(database_in_zone, min_size=1, max_size=2)
    try:
        assert await plain.fetchval("SHOW timezone") == zone  # the database's default
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW timezone") == "UTC"
    finally:
        await pool.close()
        await plain.close()


@pytest.mark.parametrize(
    ("zone", "month", "row"),
    [
        # the old arithmetic ended May on May 31 00:00 UTC
        ("America/New_York", dt.datetime(2031, 5, 1, tzinfo=UTC),
         dt.datetime(2031, 5, 31, 12, tzinfo=UTC)),
        # and March on March 28 23:00 UTC
        ("America/New_York", dt.datetime(2031, 3, 1, tzinfo=UTC),
         dt.datetime(2031, 3, 30, 12, tzinfo=UTC)),
        # and ended October at 01:00 UTC on November 1
        ("Europe/Berlin", dt.datetime(2032, 10, 1, tzinfo=UTC),
         dt.datetime(2032, 10, 31, 23, 59, tzinfo=UTC)),
    ],
)
async def test_retention_keeps_a_partition_until_its_whole_utc_month_is_past(
    fresh_database_url: str, zone: str, month: dt.datetime, row: dt.datetime
) -> None:
    conn = await local_connection(fresh_database_url, zone)
    name = f"audit_events_{month:%Y%m}"
    try:
        await write_audit_batch(conn, [make_event(row)])
        for cutoff in (row - dt.timedelta(hours=1), row + dt.timedelta(seconds=1),
                       next_month(month) - dt.timedelta(seconds=1)):
            dropped = [r[0] for r in await conn.fetch(
                "SELECT audit_drop_partitions_before($1)", cutoff)]
            assert name not in dropped, cutoff
        assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE time = $1", row) == 1
        dropped = [r[0] for r in await conn.fetch(
            "SELECT audit_drop_partitions_before($1)", next_month(month))]
        assert name in dropped
    finally:
        await conn.close()


async def test_retention_keeps_a_partition_holding_rows_newer_than_the_cutoff(
    fresh_database_url: str,
) -> None:
    """Whatever the partition's name says: a hand-made one may reach further."""
    conn = await connect(fresh_database_url)
    try:
        await conn.execute("CREATE TABLE audit_events_203001 PARTITION OF audit_events "
                           "FOR VALUES FROM ('2030-01-01 00:00+00') TO ('2030-03-01 00:00+00')")
        # not write_audit_batch: it would ask for February's partition
        await insert_without_partition(conn, dt.datetime(2030, 2, 10, tzinfo=UTC))
        cutoff = dt.datetime(2030, 2, 1, tzinfo=UTC)
        assert "audit_events_203001" not in [
            r[0] for r in await conn.fetch("SELECT audit_drop_partitions_before($1)", cutoff)]
        assert await conn.fetchval("SELECT count(*) FROM audit_events_203001") == 1
    finally:
        await conn.close()


async def _migrate_until(conn: asyncpg.Connection, last: str) -> None:
    """Apply the migrations up to and including ``last``, as the runner would have."""
    await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                       "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
    for migration in available_migrations():
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(INSERT_APPLIED, migration.version, migration.checksum)
        if migration.version == last:
            return
    raise AssertionError(f"no migration {last}")


async def test_the_migration_gives_partitions_made_by_the_old_functions_their_utc_month(
    pg_server: PgServer,
) -> None:
    before = [m.version for m in available_migrations()]
    before = before[: before.index(UTC_MONTHS)]
    name = await create_database(pg_server.admin_dsn)
    dsn = pg_server.dsn(name)
    try:
        old = await asyncpg.connect(dsn)
        try:
            await _migrate_until(old, before[-1])
            await old.execute("INSERT INTO webhook_endpoints (name, url, url_origin, kind, "
                              "events) VALUES ('rejects', 'https://hooks.example.com/in', "
                              "'https://hooks.example.com', 'webhook', '{message.rejected}')")
            rows = {
                "America/New_York": [dt.datetime(2031, 3, 10, tzinfo=UTC),
                                     dt.datetime(2031, 5, 30, 12, tzinfo=UTC),
                                     dt.datetime(2031, 6, 15, tzinfo=UTC)],
                # October reaches 01:00 UTC on November 1: the row at 00:30 lands in it
                "Europe/Berlin": [dt.datetime(2032, 10, 20, tzinfo=UTC),
                                  dt.datetime(2032, 11, 1, 0, 30, tzinfo=UTC)],
            }
            for zone, times in rows.items():
                await old.execute(f"SET timezone = '{zone}'")
                for when in times:
                    if when.month == 11:  # the writer would first ask for November's partition
                        await insert_without_partition(old, when, "reject")
                    else:
                        await write_audit_batch(old, [make_event(when, action="reject")])
            await old.execute("SET timezone = 'UTC'")
            wrong = await partition_bounds(old, 2031) | await partition_bounds(old, 2032)
            assert wrong["audit_events_203105"].endswith("TO ('2031-05-31 00:00:00+00')")
            assert wrong["audit_events_203210"].endswith("TO ('2032-11-01 01:00:00+00')")
            assert "audit_events_203211" not in wrong
            webhook_events = await old.fetchval("SELECT count(*) FROM webhook_events")
            assert webhook_events == 5  # each reject raised its event once
        finally:
            await old.close()

        conn = await connect(dsn)
        try:
            assert await apply_migrations(conn) == [
                m.version for m in available_migrations()][len(before):]
            assert await partition_bounds(conn, 2031) == expected_bounds(
                [dt.datetime(2031, m, 1, tzinfo=UTC) for m in (3, 5, 6)])
            assert await partition_bounds(conn, 2032) == expected_bounds(
                [dt.datetime(2032, m, 1, tzinfo=UTC) for m in (10, 11)])
            stored = await conn.fetch("SELECT time, tableoid::regclass::text AS part "
                                      "FROM audit_events WHERE time >= '2031-01-01' ORDER BY time")
            assert [(row["time"], row["part"]) for row in stored] == [
                (when, f"audit_events_{when:%Y%m}") for times in rows.values() for when in times]
            # moved rows raise no webhook event again; the trigger still fires for new ones
            assert await conn.fetchval("SELECT count(*) FROM webhook_events") == webhook_events
            await write_audit_batch(conn, [make_event(dt.datetime(2031, 5, 31, 12, tzinfo=UTC),
                                                       action="reject")])
            assert await conn.fetchval("SELECT count(*) FROM webhook_events") == webhook_events + 1
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_events_203211'"
            ) == await conn.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_events_203210'")
        finally:
            await conn.close()
    finally:
        await drop_database(pg_server.admin_dsn, name)
