"""The audit filters as an auditor writes them: an IDN address in either form, a
misspelt parameter, a time whose "+" a URL turned into a space."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.admin_api.audit_seed import seeded_auditor
from tests.fixtures.adminapp import MintKey, get_json

BASE = dt.datetime(2026, 10, 24, 22, 0, tzinfo=dt.UTC)
INSERT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, client_address,
    sender, recipients, size, action, rules, changes, policy_hash, duration_ms)
VALUES ($1, $2, 'mx1', $3, $3, '2001:db8::25', $4, $5, 100, 'accept', '{}', '[]', 'h', 1.5)
"""
# (sender, recipient) as a client sent them: SMTPUTF8 in U-labels, others in A-labels
ENVELOPES = [
    ("José@Bücher.example", "Zoë@xn--mller-kva.example"),
    ("bob@xn--bcher-kva.example", "ann@Müller.example"),
    ("carol@example.com", "dan@example.org"),
    ("eve@💩.la", "fay@example.org"),  # IDNA 2003 only: resolvers take it, IDNA 2008 not
]


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    async def seed(conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT audit_ensure_partition($1)", BASE)
        for i, (sender, recipient) in enumerate(ENVELOPES):
            await conn.execute(INSERT, uuid.uuid4(), BASE + dt.timedelta(minutes=i),
                               f"Q{i}", sender, [recipient])

    return await seeded_auditor(mint_key, database_url, seed)


@pytest.mark.parametrize(("name", "value", "queue_ids"), [
    ("sender", "bob@bücher.example", ["Q1"]),
    ("sender", "BOB@XN--BCHER-KVA.EXAMPLE", ["Q1"]),
    ("sender", "josé@xn--bcher-kva.example", ["Q0"]),
    ("sender", "JOSÉ@BÜCHER.EXAMPLE", ["Q0"]),
    ("recipient", "zoë@müller.example", ["Q0"]),
    ("recipient", "ann@xn--mller-kva.example", ["Q1"]),
    ("recipient", "ANN@MÜLLER.EXAMPLE", ["Q1"]),
    ("sender", "eve@xn--ls8h.la", ["Q3"]),
])
async def test_an_idn_address_matches_in_either_form(
    admin_client: TestClient[Any, Any], auditor: str, name: str, value: str,
    queue_ids: list[str],
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/audit", **{name: value})
    assert status == 200, body
    assert [event["queue_id"] for event in body["events"]] == queue_ids


@pytest.mark.parametrize(("path", "wrong"), [
    ("/api/v1/audit", "Sender"),
    ("/api/v1/audit", "recipients"),
    ("/api/v1/audit/export", "limit"),
    ("/api/v1/stats", "from"),
    ("/api/v1/admin-audit", "target"),
])
async def test_a_misspelt_parameter_is_refused_not_ignored(
    admin_client: TestClient[Any, Any], auditor: str, path: str, wrong: str
) -> None:
    """Ignored, ``Sender=`` would answer every event: all mail seen as this sender's."""
    status, body = await get_json(admin_client, auditor, path, **{wrong: "carol@example.com"})
    assert status == 422, body
    [problem] = body["error"]["details"]
    assert problem["field"] == wrong
    assert problem["message"].startswith("unknown parameter; expected one of ")


async def test_a_filter_time_whose_plus_became_a_space_says_to_write_2b(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/audit",
                              since="2026-10-25T00:00:00 02:00")
    assert status == 422
    assert body["error"]["details"] == [{
        "field": "since",
        "message": "expected an ISO 8601 time between 1900 and 9000 (write + as %2B in a URL)"}]


async def test_a_filter_time_in_rfc_3339_lower_case_is_read(
    admin_client: TestClient[Any, Any], auditor: str
) -> None:
    # RFC 3339 allows "t" and "z" for "T" and "Z": "z" was refused as no ISO 8601 time.
    status, body = await get_json(admin_client, auditor, "/api/v1/stats",
                                  since="2026-10-24t22:00:00z", until="2026-10-25T00:00:00Z")
    assert status == 200, body
    assert body["since"] == BASE.isoformat()
