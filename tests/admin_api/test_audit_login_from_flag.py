"""The audit filters ``auth_user``, ``header_from`` and ``flag`` (migration 0035): what an
account sent, who was named in From, which messages the parser or the verdict flagged."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.audit_queries import build_where, parse_filters, search_sql
from postwarden_store import connect
from tests.admin_api.audit_seed import insert_a_minute_apart, seeded_auditor
from tests.admin_api.test_audit import _index_scans
from tests.fixtures.adminapp import MintKey, get_json

pytestmark = pytest.mark.postgres

BASE = dt.datetime(2026, 10, 21, 8, 0, tzinfo=dt.UTC)
INSERT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, sender, recipients,
    size, action, rules, changes, policy_hash, duration_ms, auth_user, header_from, flags)
VALUES ($1, $2, 'mx1', $3, $3, 's@example.com', '{r@example.net}', 100, 'accept', '{}', '[]',
        'h', 1.5, $4, $5, $6)
ON CONFLICT DO NOTHING
"""
# queue id -> (auth_user, header_from, flags)
EVENTS: dict[str, tuple[str | None, str | None, list[str]]] = {
    "QF1": ("alice", "Alice@Example.COM", []),
    "QF2": ("Alice", "ceo@example.com", ["ambiguous_filename"]),
    "QF3": (None, "ceo@example.com", ["ambiguous_filename", "too_many_header_fields"]),
    "QF4": (None, None, []),
    "QF5": ("bob@example.com", "jörg@bücher.example", []),
    "QF6": (None, "ΟΔΥΣΣΕΥΣ@example.com".lower(), []),
    "QF7": (None, "İlker@example.com".lower(), []),
}


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    return await seeded_auditor(mint_key, database_url,
                                lambda conn: insert_a_minute_apart(conn, INSERT, BASE, EVENTS))


@pytest.mark.parametrize(("name", "value", "found"), [
    pytest.param("auth_user", "alice", ["QF2", "QF1"], id="login-any-case"),
    pytest.param("auth_user", "bob@example.com", ["QF5"], id="login-an-address"),
    pytest.param("header_from", "alice@example.com", ["QF1"], id="from-any-case"),
    pytest.param("header_from", "<CEO@example.com>", ["QF3", "QF2"], id="from-in-brackets"),
    pytest.param("header_from", "jörg@xn--bcher-kva.example", ["QF5"], id="from-idn"),
    # Stored as Python lower-cases it (a final sigma; i with a dot above), which
    # PostgreSQL's lower() does otherwise.
    pytest.param("header_from", "ΟΔΥΣΣΕΥΣ@example.com", ["QF6"], id="from-greek-final-sigma"),
    pytest.param("header_from", "İlker@example.com", ["QF7"], id="from-dotted-capital-i"),
    pytest.param("flag", "ambiguous_filename", ["QF3", "QF2"], id="flag"),
    pytest.param("flag", "too_many_header_fields", ["QF3"], id="another-flag"),
])
async def test_each_filter_finds_its_events(
    admin_client: TestClient[Any, Any], auditor: str, name: str, value: str, found: list[str]
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/audit",
                                  **{name: value, "since": BASE.isoformat()})
    assert status == 200, body
    assert [event["queue_id"] for event in body["events"]] == found


async def test_the_filters_are_in_the_openapi_document(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    status, document = await get_json(admin_client, auditor, "/api/v1/openapi.json")
    assert status == 200
    names = {p["name"] for p in document["paths"]["/api/v1/audit"]["get"]["parameters"]}
    assert {"auth_user", "header_from", "flag"} <= names


@pytest.mark.parametrize(("name", "value", "index"), [
    ("auth_user", "alice", "audit_events_auth_user"),
    ("header_from", "Alice@Example.COM", "audit_events_header_from"),
    ("flag", "ambiguous_filename", "audit_events_flags"),
])
async def test_each_filter_is_served_by_its_index(
    auditor: str, database_url: str, name: str, value: str, index: str
) -> None:
    where = build_where({name: value}, None)
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) SELECT event_id FROM audit_events{where} "  # noqa: S608
                "ORDER BY time DESC LIMIT 10", *where.params)
        partition_indexes = {row[0] for row in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass", index)}
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass")
    finally:
        await conn.close()
    scans = _index_scans(plan[0]["Plan"])  # the connection's codec decodes the json
    assert len({index for _, index in scans} & partition_indexes) == partitions >= 2


# An audit log of some size, for the planner: a third of the rows with a login and a From.
FILL = """
INSERT INTO audit_events (event_id, time, instance, message_uid, sender, recipients, size,
    action, rules, changes, policy_hash, duration_ms, header_from, auth_user)
SELECT gen_random_uuid(), $1::timestamptz + i * interval '20 seconds', 'mx1', 'fill' || i,
       's' || (i % 500) || '@example.org', ARRAY['r' || (i % 2000) || '@example.net'], 1,
       'accept', '{}', '[]', 'h', 1,
       CASE WHEN i % 3 = 0 THEN 'from' || (i % 4000) || '@example.org' END,
       CASE WHEN i % 3 = 0 THEN 'login' || (i % 300) END
FROM generate_series(1, $2) AS i
"""
FILL_START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
FILL_ROWS = 60_000


def _rows_filtered_out(plan: dict[str, Any]) -> int:
    return plan.get("Rows Removed by Filter", 0) + sum(
        _rows_filtered_out(p) for p in plan.get("Plans", []))


@pytest.mark.parametrize("filters", [
    pytest.param({"header_from": "nobody@bücher.example"}, id="header_from-idn"),
    pytest.param({"header_from": "nobody@example.org"}, id="header_from"),
    pytest.param({"auth_user": "nobody"}, id="auth_user"),
])
async def test_a_search_for_an_address_no_row_holds_reads_no_table_through(
    database_url: str, filters: dict[str, str]
) -> None:
    """The page the API asks for (newest first, a limit). With a partial index on the
    From address, the planner (which keeps no statistics of a partial index's
    expression) walked the whole log newest first for an IDN address's forms."""
    sql, params = search_sql(parse_filters(filters, ()), None, 101)
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", FILL_START)
        if not await conn.fetchval(  # filled once for the three cases
                "SELECT EXISTS (SELECT FROM audit_events WHERE message_uid = 'fill1')"):
            await conn.execute(FILL, FILL_START, FILL_ROWS)
            await conn.execute("ANALYZE audit_events")
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
    finally:
        await conn.close()
    assert _rows_filtered_out(plan[0]["Plan"]) < FILL_ROWS // 10
