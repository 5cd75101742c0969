"""The audit filter ``recipient`` finds a transaction by a recipient the milter refused
at RCPT (migration 0034): such an address is only in the event's `changes`, as a
`recipient_refused` entry, and asking what became of mail to it must find that event."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.audit_queries import search_sql
from postwarden_store import connect
from tests.admin_api.audit_seed import insert_a_minute_apart, seeded_auditor
from tests.fixtures.adminapp import MintKey, bearer, get_json

pytestmark = pytest.mark.postgres

BASE = dt.datetime(2026, 10, 7, 8, 0, tzinfo=dt.UTC)
INSERT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, sender, recipients,
    size, action, rules, changes, policy_hash, duration_ms)
VALUES ($1, $2, 'mx1', $3, $3, 's@example.com', $4, 100, $5, '{}', $6, 'h', 1.5)
ON CONFLICT DO NOTHING
"""


def refused(address: str) -> dict[str, str]:
    return {"kind": "recipient_refused", "recipient": address,
            "reply": "550 5.1.1 <" + address + ">: Recipient address rejected"}


# queue id -> (accepted recipients, action, changes)
EVENTS: dict[str, tuple[list[str], str, list[dict[str, Any]]]] = {
    "QR1": (["ann@example.net"], "accept", [refused("Bob@Example.NET")]),
    "QR2": (["bob@example.net"], "accept", []),
    # Every recipient refused: the transaction ends without a message.
    "QR3": ([], "aborted", [refused("bob@example.net"), refused("cy@example.net")]),
    "QR4": (["dee@example.net"], "accept", [
        {"kind": "recipient_deleted", "recipient": "dee@example.net"},
        {"kind": "attachment_stripped", "filename": "bob@example.net", "size": 1}]),
    "QR5": (["eve@example.net"], "accept", [refused("jörg@bücher.example")]),
}


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    return await seeded_auditor(mint_key, database_url,
                                lambda conn: insert_a_minute_apart(conn, INSERT, BASE, EVENTS))


@pytest.mark.parametrize(("recipient", "found"), [
    pytest.param("bob@example.net", ["QR3", "QR2", "QR1"], id="accepted-or-refused"),
    pytest.param("<BOB@example.net>", ["QR3", "QR2", "QR1"], id="any-case-as-logged"),
    pytest.param("cy@example.net", ["QR3"], id="refused-with-another"),
    pytest.param("ann@example.net", ["QR1"], id="accepted-only"),
    pytest.param("jörg@xn--bcher-kva.example", ["QR5"], id="idn-in-the-other-form"),
])
async def test_a_recipient_refused_at_rcpt_finds_its_event(
    admin_client: TestClient[Any, Any], auditor: str, recipient: str, found: list[str]
) -> None:
    params = {"recipient": recipient, "since": BASE.isoformat()}
    status, body = await get_json(admin_client, auditor, "/api/v1/audit", **params)
    assert status == 200, body
    assert [event["queue_id"] for event in body["events"]] == found
    exported = await admin_client.get("/api/v1/audit/export", headers=bearer(auditor),
                                      params={**params, "format": "ndjson"})
    assert exported.status == 200
    lines = (await exported.text()).splitlines()
    assert [json.loads(line)["queue_id"] for line in lines] == found


async def test_a_recheck_before_the_index_predicate_takes_any_changes(
    database_url: str
) -> None:
    """A bitmap page too many rows match (work_mem) is lossy: its rows are rechecked
    against the index's condition before its predicate, so audit_refused() also meets
    rows the predicate keeps out of the index, whatever their `changes` (the writer
    stores a list, but a row is no place to fail a search)."""
    when = dt.datetime(2026, 10, 20, tzinfo=dt.UTC)
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", when)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO audit_events (event_id, time, instance, message_uid, sender, "
                "recipients, size, action, rules, changes, policy_hash, duration_ms, subject) "
                "SELECT gen_random_uuid(), $1::timestamptz + i * interval '1 second', 'mx', "
                "'u', 's', ARRAY[CASE WHEN i % 2 = 0 THEN 'hot' ELSE 'cold' END || "
                "'@example.org'], 1, 'accept', '{}', CASE WHEN i % 2 = 1 "
                "THEN '{\"kind\": \"x\"}'::jsonb ELSE '[]'::jsonb END, 'h', 1, "
                "repeat(md5(i::text), 20) FROM generate_series(1, 40000) AS i", when)
            for setting in ("work_mem = '64kB'", "enable_seqscan = off",
                            "enable_indexscan = off"):
                await conn.execute(f"SET LOCAL {setting}")
            sql, params = search_sql({"recipient": "hot@example.org"}, None, 10)
            assert len(await conn.fetch(sql, *params)) == 10
            raise Rollback
    except Rollback:
        pass
    finally:
        await conn.close()


class Rollback(Exception):
    """Ends the transaction that added the rows, and them with it."""
