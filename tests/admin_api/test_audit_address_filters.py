"""The audit filters ``sender`` and ``recipient`` take an address as Postfix's log
writes it too: in angle brackets, and ``<>`` for the null sender."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.audit_queries import parse_filters
from tests.admin_api.audit_seed import insert_a_minute_apart, seeded_auditor
from tests.fixtures.adminapp import MintKey, get_json

BASE = dt.datetime(2026, 9, 15, 8, 0, tzinfo=dt.UTC)
INSERT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, sender, recipients,
    size, action, rules, changes, policy_hash, duration_ms)
VALUES ($1, $2, 'mx1', $3, $3, $4, $5, 100, 'accept', '{}', '[]', 'h', 1.5)
ON CONFLICT DO NOTHING
"""
# queue id -> (sender, recipients)
EVENTS = {"QB1": ("", ["postmaster@example.com"]), "QB2": ("s@example.com", ["r@example.net"])}


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    return await seeded_auditor(mint_key, database_url,
                                lambda conn: insert_a_minute_apart(conn, INSERT, BASE, EVENTS))


@pytest.mark.parametrize(("name", "value", "queue_id"), [
    pytest.param("sender", "<>", "QB1", id="null-sender-as-logged"),
    pytest.param("sender", "", "QB1", id="null-sender-empty"),
    pytest.param("sender", "<s@example.com>", "QB2", id="sender-in-brackets"),
    pytest.param("recipient", "<r@example.net>", "QB2", id="recipient-in-brackets"),
])
async def test_an_address_as_postfix_logs_it_finds_its_events(
    admin_client: TestClient[Any, Any], auditor: str, name: str, value: str, queue_id: str
) -> None:
    status, body = await get_json(admin_client, auditor, "/api/v1/audit", **{
        name: value, "since": BASE.isoformat()})
    assert status == 200, body
    assert [event["queue_id"] for event in body["events"]] == [queue_id]


def test_only_a_whole_bracketed_address_loses_its_brackets() -> None:
    assert parse_filters({"sender": "<a@b.example"}, ()) == {"sender": "<a@b.example"}
    assert parse_filters({"recipient": "<>"}, ()) == {"recipient": ""}
    assert parse_filters({"message_id": "<x@y>"}, ()) == {"message_id": "<x@y>"}
