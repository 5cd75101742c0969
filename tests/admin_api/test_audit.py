"""Audit search, keyset pages, one event, streaming export, stats, the append-only admin log."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import admin_audit, audit_queries, retention, routes_audit
from postwarden_admin_api.audit_queries import build_where
from postwarden_admin_api.context import Role
from postwarden_admin_api.cursors import Cursor
from postwarden_admin_api.retention import enforce_retention
from postwarden_store import connect, create_pool
from tests.admin_api.audit_seed import seeded_auditor
from tests.fixtures.adminapp import MintKey, bearer
from tests.fixtures.clocks import HostClockAhead, HostClockBehind

BASE = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
INSERT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, client_address,
    sender, recipients, message_id, size, action, rules, changes, policy_hash, duration_ms)
VALUES ($1, $2, 'mx1', $3, $4, $5, $6, $7, $8, 100, $9, $10, '[]', 'h', 1.5)
"""


async def _insert(conn: asyncpg.Connection, count: int, start: dt.datetime) -> list[str]:
    ids = []
    for i in range(count):
        event_id = uuid.uuid4()
        when = start + dt.timedelta(minutes=i)
        await conn.execute("SELECT audit_ensure_partition($1)", when)
        await conn.execute(
            INSERT, event_id, when, f"Q{i:04d}", f"uid{i}", f"198.51.100.{i % 5 + 1}",
            f"Sender{i % 3}@Example.com", [f"rcpt{i % 2}@example.org"], f"<m{i}@x>",
            ("accept", "reject", "quarantine")[i % 3], [f"rule-{i % 4}"],
        )
        ids.append(str(event_id))
    return ids


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own (in place of the module's shared one): the tests
    here count events, totals and admin log entries, which another test's rows would
    change whatever order the tests run in. The app, keys and inserts all use it."""
    return fresh_database_url


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    """An auditor key, and 30 events from BASE on in the test's own database."""
    return await seeded_auditor(mint_key, database_url, lambda conn: _insert(conn, 30, BASE))


async def _get(client: TestClient[Any, Any], key: str, path: str, **params: str) -> Any:
    response = await client.get(path, headers=bearer(key), params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_filters(admin_client: TestClient[Any, Any], auditor: str) -> None:
    def count(**params: str) -> Any:
        return _get(admin_client, auditor, "/api/v1/audit", limit="1000", **params)

    assert len((await count())["events"]) == 30
    assert len((await count(sender="sender1@example.com"))["events"]) == 10
    assert len((await count(recipient="rcpt0@example.org"))["events"]) == 15
    assert len((await count(action="reject"))["events"]) == 10
    assert len((await count(rule="rule-2"))["events"]) == 7
    assert [e["queue_id"] for e in (await count(queue_id="Q0007"))["events"]] == ["Q0007"]
    assert len((await count(message_id="<m3@x>"))["events"]) == 1
    # Our id, as the X-Postwarden-Id header of a delivered copy shows it.
    assert [e["queue_id"] for e in (await count(message_uid="uid12"))["events"]] == ["Q0012"]
    assert len((await count(client_address="198.51.100.2"))["events"]) == 6
    window = await count(since=(BASE + dt.timedelta(minutes=10)).isoformat(),
                         until=(BASE + dt.timedelta(minutes=20)).isoformat())
    assert len(window["events"]) == 10


async def test_bad_filters_are_all_reported(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    response = await admin_client.get("/api/v1/audit", headers=bearer(auditor), params={
        "since": "yesterday", "client_address": "nope", "action": "explode", "cursor": "%%%",
        "limit": "0"})
    assert response.status == 422
    fields = {d["field"] for d in (await response.json())["error"]["details"]}
    assert fields == {"since", "client_address", "action", "cursor", "limit"}


@pytest.mark.parametrize(("path", "params", "expected"), [
    ("/api/v1/stats", {"until": "soon", "top": "0", "bucket": "week", "tz": "Mars/Olympus"},
     {"until", "top", "bucket", "tz"}),
    ("/api/v1/admin-audit", {"limit": "0", "before": "-1", "since": "today", "who": "me"},
     {"limit", "before", "since", "who"}),
    ("/api/v1/audit/export", {"format": "xml", "until": "soon", "sender": "a" * 999},
     {"format", "until", "sender"}),
])
async def test_stats_the_export_and_the_admin_log_list_every_bad_parameter(
    admin_client: TestClient[Any, Any], auditor: str, path: str, params: dict[str, str],
    expected: set[str],
) -> None:
    """Not the first alone: a client fixes them in one round."""
    response = await admin_client.get(path, headers=bearer(auditor), params=params)
    assert response.status == 422
    assert {d["field"] for d in (await response.json())["error"]["details"]} == expected


async def test_an_admin_log_position_of_0_is_refused_as_the_api_describes_it(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    """The OpenAPI says before is at least 1 (an entry id); 0 answered the first page, as
    if no position were given."""
    response = await admin_client.get("/api/v1/admin-audit", headers=bearer(auditor),
                                      params={"before": "0"})
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["before"]


async def test_keyset_pages_are_stable_under_inserts(
    admin_client: TestClient[Any, Any], auditor: str, database_url: str
) -> None:
    until = (BASE + dt.timedelta(hours=1)).isoformat()
    first = await _get(admin_client, auditor, "/api/v1/audit", limit="12", until=until)
    conn = await connect(database_url)
    try:  # newer events arrive between pages; they must not shift the walk
        await _insert(conn, 3, BASE + dt.timedelta(minutes=30, seconds=30))
    finally:
        await conn.close()
    seen = [e["event_id"] for e in first["events"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await _get(admin_client, auditor, "/api/v1/audit", limit="12", until=until,
                          cursor=cursor)
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 30  # nothing skipped, nothing twice
    one = await _get(admin_client, auditor, f"/api/v1/audit/{seen[5]}")
    assert one["event_id"] == seen[5]
    missing = await admin_client.get(f"/api/v1/audit/{uuid.uuid4()}", headers=bearer(auditor))
    assert missing.status == 404


async def test_a_cursor_is_refused_with_other_filters_or_on_another_search(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    """It would start partway through a result it was never part of: the rejects
    after the tenth accept, say, with nothing telling the client so."""
    first = await _get(admin_client, auditor, "/api/v1/audit", limit="5", action="accept")
    cursor = first["next_cursor"]
    for path, params in (("/api/v1/audit", {"action": "reject"}),
                         ("/api/v1/audit", {}),
                         ("/api/v1/messages", {"cursor": cursor})):
        refused = await admin_client.get(path, headers=bearer(auditor),
                                         params={"cursor": cursor, **params})
        assert refused.status == 422, await refused.text()
        error = (await refused.json())["error"]
        assert error["code"] == "cursor_mismatch"
        assert error["details"] == [{"field": "cursor",
                                     "message": "from a search with other filters"}]
    # The same filters written otherwise are the same search.
    until = BASE + dt.timedelta(hours=1)
    page = await _get(admin_client, auditor, "/api/v1/audit", limit="5",
                      until=until.isoformat())
    in_paris = until.astimezone(dt.timezone(dt.timedelta(hours=1))).isoformat()
    later = await _get(admin_client, auditor, "/api/v1/audit", limit="5", until=in_paris,
                       cursor=page["next_cursor"])
    assert len(later["events"]) == 5


async def test_a_cursor_of_the_previous_version_still_pages(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    """Cursors handed out before they named their search (time and id alone) go on
    where they left off: a client paging across the upgrade is not sent back."""
    first = await _get(admin_client, auditor, "/api/v1/audit", limit="5", action="accept")
    last = first["events"][-1]
    legacy = Cursor(dt.datetime.fromisoformat(last["time"]),
                    uuid.UUID(last["event_id"])).encode()
    page = await _get(admin_client, auditor, "/api/v1/audit", limit="5", action="accept",
                      cursor=legacy)
    assert len(page["events"]) == 5
    assert page["events"][0]["time"] < last["time"]


async def test_export_streams_ndjson_and_csv(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    params = {"action": "reject", "until": (BASE + dt.timedelta(minutes=30)).isoformat()}
    response = await admin_client.get("/api/v1/audit/export", headers=bearer(auditor),
                                      params={**params, "format": "ndjson"})
    assert response.status == 200
    assert response.headers.get("Transfer-Encoding") == "chunked"
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert len(lines) == 10 and {e["action"] for e in lines} == {"reject"}

    response = await admin_client.get("/api/v1/audit/export", headers=bearer(auditor),
                                      params={**params, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 10 and rows[0]["action"] == "reject"
    assert json.loads(rows[0]["recipients"])[0].startswith("rcpt")


async def test_stats_by_hour_and_top_rules(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    stats = await _get(admin_client, auditor, "/api/v1/stats", bucket="hour",
                       since=BASE.isoformat(), until=(BASE + dt.timedelta(minutes=30)).isoformat())
    assert stats["totals"] == {"accept": 10, "reject": 10, "quarantine": 10}
    assert stats["series"][0]["start"].startswith("2026-11-20T12:00")
    assert stats["top_rules"][0] == {"rule": "rule-0", "count": 8}


async def test_top_rules_count_an_event_once_per_rule_name(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str
) -> None:
    """Two policies of a set may each have a rule "spam": an event they both matched
    names it twice, and is one event for it."""
    async def seed(conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT audit_ensure_partition($1)", BASE)
        for rules in (["spam", "spam", "virus"], ["virus"]):
            await conn.execute(INSERT, uuid.uuid4(), BASE, "Q1", "uid", "192.0.2.1",
                               "a@example.com", ["b@example.org"], "<m@x>", "reject", rules)

    key = await seeded_auditor(mint_key, database_url, seed)
    stats = await _get(admin_client, key, "/api/v1/stats", since=BASE.isoformat(),
                       until=(BASE + dt.timedelta(minutes=1)).isoformat())
    assert stats["top_rules"] == [{"rule": "virus", "count": 2}, {"rule": "spam", "count": 1}]


async def test_stats_end_by_default_at_the_databases_now_not_the_hosts(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An admin host whose clock runs behind left the newest events out of the default
    range (the last day up to now): the dashboard showed no mail of the last hour."""
    monkeypatch.setattr(routes_audit, "dt", HostClockBehind)
    conn = await connect(database_url)
    try:
        now = await conn.fetchval("SELECT now()")
        await conn.execute("SELECT audit_ensure_partition($1)", now)
        await conn.execute(INSERT, uuid.uuid4(), now - dt.timedelta(minutes=1), "Q1", "uid",
                           "192.0.2.1", "a@example.com", ["b@example.org"], "<m@x>", "reject",
                           ["spam"])
    finally:
        await conn.close()
    key = await mint_key(Role.AUDITOR)
    stats = await _get(admin_client, key, "/api/v1/stats")
    assert stats["totals"] == {"reject": 1}
    assert dt.datetime.fromisoformat(stats["until"]) >= now


async def test_the_admin_log_read_is_cut_at_the_statement_timeout(
    admin_client: TestClient[Any, Any], auditor: str, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_queries, "STATEMENT_TIMEOUT_MS", 200)
    blocker = await connect(database_url)
    try:
        async with blocker.transaction():
            # The read waits for this lock: it stands for a read that is slow.
            await blocker.execute("LOCK TABLE admin_audit IN ACCESS EXCLUSIVE MODE")
            async with asyncio.timeout(30):
                response = await admin_client.get("/api/v1/admin-audit", headers=bearer(auditor))
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "query_timeout"
    finally:
        await blocker.close()


async def test_the_admin_log_pages_end_where_the_entries_do(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    for name in ("one", "two"):
        await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                                json={"role": "auditor", "name": name})
    first = await _get(admin_client, admin_key, "/api/v1/admin-audit", action="key.created",
                       limit="1")
    assert [e["summary"]["name"] for e in first["entries"]] == ["two"]
    second = await _get(admin_client, admin_key, "/api/v1/admin-audit", action="key.created",
                        limit="1", before=str(first["next_before"]))
    assert [e["summary"]["name"] for e in second["entries"]] == ["one"]
    assert second["next_before"] is None  # no last page that is empty


async def test_an_admin_log_before_is_a_plain_id_that_any_filters_take(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """``before`` is no cursor bound to a search (docs/api.md): an id found by one filter
    starts a page of another, the entries older than it that this one matches."""
    made = await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                                   json={"role": "auditor", "name": "older"})
    await admin_client.delete(f"/api/v1/keys/{(await made.json())['key_id']}",
                              headers=bearer(admin_key))
    await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                            json={"role": "auditor", "name": "newer"})
    revoked = await _get(admin_client, admin_key, "/api/v1/admin-audit", action="key.revoked")
    [entry] = revoked["entries"]
    created = await _get(admin_client, admin_key, "/api/v1/admin-audit", action="key.created",
                         before=str(entry["id"]))
    assert [e["summary"]["name"] for e in created["entries"]] == ["older"]
    unfiltered = await _get(admin_client, admin_key, "/api/v1/admin-audit",
                            before=str(entry["id"]))
    assert all(e["id"] < entry["id"] for e in unfiltered["entries"])
    assert "older" in [e["summary"].get("name") for e in unfiltered["entries"]]


async def test_an_admin_log_before_takes_any_id_an_entry_can_have(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # Past 2**62 it was 422 "expected 1..4611686018427387904": an id is a bigint, as a
    # policy revision's before takes one (and the document sets no maximum).
    await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                            json={"role": "auditor", "name": "any-id"})
    page = await _get(admin_client, admin_key, "/api/v1/admin-audit", before=str(2**63 - 1))
    assert "any-id" in [e["summary"].get("name") for e in page["entries"]]


async def test_the_admin_log_refuses_an_empty_range(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    response = await admin_client.get("/api/v1/admin-audit", headers=bearer(auditor),
                                      params={"since": BASE.isoformat(),
                                              "until": BASE.isoformat()})
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [
        {"field": "since", "message": "must be before until"}]


def _rows_removed(plan: dict[str, Any]) -> int:
    """Rows every node of a JSON plan (EXPLAIN ANALYZE) read and then threw away."""
    return int(plan.get("Rows Removed by Filter", 0)) + sum(
        _rows_removed(child) for child in plan.get("Plans", []))


async def test_an_admin_log_page_reads_no_newer_entries(database_url: str) -> None:
    """The page before entry 100 of 5000, planned as a cached statement may be: an
    index condition, not a filter over the 4900 newer entries."""
    conn = await connect(database_url)
    try:
        await conn.execute("INSERT INTO admin_audit (action, target) "
                           "SELECT 'key.created', 'k' || n FROM generate_series(1, 5000) n")
        await conn.execute("ANALYZE admin_audit")
        before = await conn.fetchval("SELECT min(id) + 99 FROM admin_audit")
        queries: list[Any] = []
        conn.add_query_logger(queries.append)
        sql, params = admin_audit.page_sql(
            {"since": None, "until": None, "action": None, "before_id": before}, 10)
        page = await conn.fetch(sql, *params)
        for _ in range(1000):  # the logger is called soon after, not at once
            if queries:
                break
            await asyncio.sleep(0)
        conn.remove_query_logger(queries.append)
        assert [entry["id"] for entry in page] == list(range(before - 1, before - 11, -1))
        [logged] = queries
        literals = ", ".join("NULL" if arg is None else str(int(arg)) for arg in logged.args)
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE page AS {logged.query}")
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page({literals})")
            await conn.execute("DEALLOCATE page")
    finally:
        await conn.close()
    assert _rows_removed(plan[0]["Plan"]) == 0


async def test_admin_audit_is_append_only_and_listed(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                            json={"role": "auditor", "name": "reader"})
    log = await _get(admin_client, admin_key, "/api/v1/admin-audit", action="key.created")
    entry = log["entries"][0]
    assert entry["key_id"] == admin_key.split("_")[1]
    assert entry["client_address"] == "127.0.0.1"
    assert entry["summary"] == {"role": "auditor", "name": "reader"}
    conn = await connect(database_url)
    try:
        for statement in ("UPDATE admin_audit SET action = 'x'", "DELETE FROM admin_audit",
                          "TRUNCATE admin_audit"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_retention_drops_whole_old_partitions(fresh_database_url: str) -> None:
    conn = await connect(fresh_database_url)
    try:
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
        await _insert(conn, 2, old)
        await conn.execute(
            "INSERT INTO runtime_settings (name, value) VALUES ('audit_retention_days', '30')")
        dropped = await enforce_retention(conn)
        assert dropped == [f"audit_events_{old:%Y%m}"]
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
        assert await enforce_retention(conn) == []
    finally:
        await conn.close()


async def test_retention_goes_by_the_databases_clock_not_the_hosts(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retention, "dt", HostClockAhead)
    conn = await connect(fresh_database_url)
    try:
        now = dt.datetime.now(dt.UTC)
        await _insert(conn, 1, now)
        await conn.execute(
            "INSERT INTO runtime_settings (name, value) VALUES ('audit_retention_days', '30')")
        assert await enforce_retention(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 1
        # nothing of this month is refused as expired afterwards
        assert await conn.fetchval("SELECT kept_from FROM audit_retention") <= now
    finally:
        await conn.close()


async def test_the_recipient_filter_ignores_case_and_keeps_the_address_as_given(
    admin_client: TestClient[Any, Any], auditor: str, database_url: str
) -> None:
    when = BASE + dt.timedelta(hours=2)  # outside the windows the other tests count
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", when)
        await conn.execute(INSERT, uuid.uuid4(), when, "QCASE", "uid-case", None,
                           "case@example.com", ["Bob@Example.COM", "carol@example.org"],
                           "<case@x>", "accept", [])
    finally:
        await conn.close()
    for recipient in ("bob@example.com", "Bob@Example.COM", "BOB@EXAMPLE.COM"):
        page = await _get(admin_client, auditor, "/api/v1/audit", recipient=recipient)
        assert [e["queue_id"] for e in page["events"]] == ["QCASE"], recipient
        assert page["events"][0]["recipients"] == ["Bob@Example.COM", "carol@example.org"]
    for recipient in ("bob@example.co", "ob@example.com"):
        page = await _get(admin_client, auditor, "/api/v1/audit", recipient=recipient)
        assert page["events"] == []


def _index_scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, index name) of every node of a JSON plan that reads an index."""
    found = []
    if "Index Name" in plan:
        found.append((plan["Node Type"], plan["Index Name"]))
    for child in plan.get("Plans", []):
        found += _index_scans(child)
    return found


async def test_the_recipient_filter_is_served_by_its_indexes(
    auditor: str, database_url: str
) -> None:
    """In every partition, the lower-cased recipients' index and that of the recipients
    refused at RCPT (migration 0034), their results ORed."""
    where = build_where({"recipient": "Bob@Example.COM"}, None)
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = await conn.fetchval(  # the pool's codec decodes the json
                f"EXPLAIN (FORMAT JSON) SELECT event_id FROM audit_events{where}",  # noqa: S608
                *where.params)
        partition_indexes = {parent: {row[0] for row in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass", parent)}
            for parent in ("audit_events_recipients_lower", "audit_events_refused")}
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass")
    finally:
        await conn.close()
    scans = _index_scans(plan[0]["Plan"])
    assert len(scans) == 2 * partitions >= 4
    assert {node for node, _ in scans} == {"Bitmap Index Scan"}
    for indexes in partition_indexes.values():
        assert len({index for _, index in scans} & indexes) == partitions


async def test_every_search_page_is_planned_for_its_own_values(
    auditor: str, database_url: str
) -> None:
    """A page's statement is prepared once per pooled connection, and after five runs
    PostgreSQL may keep a generic plan for it, which guesses how many rows a GIN filter
    (recipient, rule, flag) matches and how many lie past the cursor: on 600,000 events
    one recipient in ten had, every page read the recipient's events older than the
    cursor and sorted them, 45 s for the 600 pages that took 4 s planned each for its
    values."""
    pool = await create_pool(database_url, max_size=1)
    try:
        cursor = None
        for _ in range(8):  # the eight events of rule-1, one a page
            async with audit_queries.reading(pool) as conn:
                rows = [row async for row in audit_queries.search_rows(
                    conn, {"rule": "rule-1"}, cursor, 1)]
                # The page's statement, not this one (whose text holds the same words).
                plans = await conn.fetchrow(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE 'SELECT event_id, %FROM audit_events WHERE rules @>%'")
            assert plans is not None and plans["generic_plans"] == 0
            cursor = Cursor(rows[-1]["time"], rows[-1]["event_id"])
    finally:
        await pool.close()
