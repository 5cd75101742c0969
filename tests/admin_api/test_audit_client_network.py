"""The audit filter ``client_address`` given a network: CIDR blocks of either family,
an IPv4-mapped form, a network with host bits set refused, and an index range that a
cached (generic) plan keeps."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.audit_queries import build_where, parse_filters
from postwarden_store import connect
from tests.admin_api.audit_seed import insert_a_minute_apart, seeded_auditor
from tests.fixtures.adminapp import MintKey, bearer, get_json

BASE = dt.datetime(2026, 9, 14, 8, 0, tzinfo=dt.UTC)
INSERT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, client_address,
    sender, recipients, size, action, rules, changes, policy_hash, duration_ms)
VALUES ($1, $2, 'mx1', $3, $3, $4, 's@example.com', '{}', 100, $5, '{}', '[]', 'h', 1.5)
ON CONFLICT DO NOTHING
"""
# queue id -> client address; the same event ids every time, so a second insert into
# the module's database adds nothing
CLIENTS = {
    "Q4a": "192.0.2.1", "Q4b": "192.0.2.200", "Q4c": "192.0.3.5",
    "Q6a": "2001:db8::25", "Q6b": "2001:db8:1::7", "Q6c": "2001:db9::1",
}


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    events = {queue_id: (address, "accept") for queue_id, address in CLIENTS.items()}
    return await seeded_auditor(mint_key, database_url,
                                lambda conn: insert_a_minute_apart(conn, INSERT, BASE, events))


@pytest.mark.parametrize(("value", "queue_ids"), [
    pytest.param("192.0.2.0/24", {"Q4a", "Q4b"}, id="ipv4-network"),
    pytest.param("192.0.0.0/16", {"Q4a", "Q4b", "Q4c"}, id="wider-ipv4-network"),
    pytest.param("192.0.2.1", {"Q4a"}, id="bare-address-exactly"),
    pytest.param("192.0.2.1/32", {"Q4a"}, id="host-network-exactly"),
    pytest.param("2001:db8::/32", {"Q6a", "Q6b"}, id="ipv6-network"),
    pytest.param("2001:db8::/48", {"Q6a"}, id="narrower-ipv6-network"),
    pytest.param("0.0.0.0/0", {"Q4a", "Q4b", "Q4c"}, id="all-ipv4-no-ipv6"),
    pytest.param("::ffff:192.0.2.1", {"Q4a"}, id="mapped-address-as-ipv4"),
    pytest.param("::ffff:192.0.2.0/120", {"Q4a", "Q4b"}, id="mapped-network-as-ipv4"),
    pytest.param("198.51.100.0/24", set(), id="no-event"),
])
async def test_a_network_matches_the_events_of_its_clients(
    admin_client: TestClient[Any, Any], auditor: str, value: str, queue_ids: set[str]
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/audit", client_address=value)
    assert status == 200, body
    assert {event["queue_id"] for event in body["events"]} == queue_ids


async def test_the_export_takes_a_network_too(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    response = await admin_client.get("/api/v1/audit/export", headers=bearer(auditor),
                                      params={"client_address": "2001:db8::/32"})
    assert response.status == 200
    lines = (await response.text()).splitlines()
    assert {json.loads(line)["queue_id"] for line in lines} == {"Q6a", "Q6b"}


@pytest.mark.parametrize(("value", "meant"), [
    pytest.param("192.0.2.1/24", "192.0.2.0/24", id="ipv4"),
    pytest.param("2001:db8::1/32", "2001:db8::/32", id="ipv6"),
    pytest.param("::ffff:192.0.2.1/120", "192.0.2.0/24", id="mapped"),
])
@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/export"])
async def test_host_bits_are_refused_naming_the_network(
    admin_client: TestClient[Any, Any], auditor: str, path: str, value: str, meant: str
) -> None:
    """Not widened silently: 192.0.2.1/24 may mean the one client, or its network.
    Every other bad parameter is listed in the same answer."""
    status, body = await get_json(admin_client, auditor, path, client_address=value,
                              action="explode", since="yesterday")
    assert status == 422, body
    problems = {d["field"]: d["message"] for d in body["error"]["details"]}
    assert set(problems) == {"client_address", "action", "since"}
    assert problems["client_address"] == (
        f"host bits set: the network is {meant} "
        "(an address without a prefix matches that address alone)")


@pytest.mark.parametrize("value", [
    pytest.param("nope", id="text"),
    pytest.param("192.0.2.0/33", id="prefix-too-long"),
    pytest.param("fe80::1%eth0", id="zone-index"),
    pytest.param("192.0.2.0/24/8", id="two-prefixes"),
])
async def test_what_is_no_address_nor_network_is_refused(
    admin_client: TestClient[Any, Any], auditor: str, value: str
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/audit", client_address=value)
    assert status == 422, body
    assert body["error"]["details"] == [{
        "field": "client_address",
        "message": "expected an IP address or a CIDR network such as 192.0.2.0/24 "
                   "or 2001:db8::/32"}]


def _rows_removed(plan: dict[str, Any]) -> int:
    """Rows every node of a JSON plan (EXPLAIN ANALYZE) read and then threw away."""
    return int(plan.get("Rows Removed by Filter", 0)) + sum(
        _rows_removed(child) for child in plan.get("Plans", []))


def _index_names(plan: dict[str, Any]) -> set[str]:
    names = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        names |= _index_names(child)
    return names


async def test_a_network_is_an_index_range_in_a_generic_plan(fresh_database_url: str) -> None:
    """asyncpg caches statements, and Postgres may plan one for any parameter after
    five runs: the client index must still read the network's range only, not every
    event (as "<<=" alone would in such a plan)."""
    conn = await connect(fresh_database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", BASE)
        await conn.execute(
            "INSERT INTO audit_events (event_id, time, instance, message_uid, client_address, "
            "sender, recipients, size, action, rules, changes, policy_hash, duration_ms) "
            "SELECT gen_random_uuid(), $1::timestamptz + n * interval '1 second', 'mx1', "
            "'u' || n, ('10.' || n % 40 || '.' || n % 7 || '.' || n % 250)::inet, "
            "'s@example.com', '{}', 1, 'accept', '{}', '[]', 'h', 1 "
            "FROM generate_series(1, 4000) n", BASE)
        await conn.execute("ANALYZE audit_events")
        filters = parse_filters({"client_address": "10.3.0.0/16"}, ())
        where = build_where(filters, None)
        [network] = where.params
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute(
                f"PREPARE network AS SELECT event_id FROM audit_events{where}")  # noqa: S608
            plan = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE network('{network}')")
            await conn.execute("DEALLOCATE network")
        client_indexes = {row[0] for row in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit_events_client'::regclass")}
    finally:
        await conn.close()
    assert plan[0]["Plan"]["Actual Rows"] == 100
    used = _index_names(plan[0]["Plan"])
    assert used and used <= client_indexes
    assert _rows_removed(plan[0]["Plan"]) == 0
