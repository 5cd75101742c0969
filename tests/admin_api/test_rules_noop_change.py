"""A Rules API change that changes nothing (the rule as it is, at its place) writes no
admin audit entry, as an activation of the active revision writes none."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_store import connect
from tests.fixtures.adminapp import bearer


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url  # counts this test's audit entries alone


async def _rule_entries(database_url: str) -> list[str]:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch("SELECT action FROM admin_audit WHERE action LIKE 'rule.%' "
                                "ORDER BY id")
    finally:
        await conn.close()
    return [row["action"] for row in rows]


async def test_a_change_to_nothing_writes_no_audit_entry(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    rule = {"name": "spam", "when": {"sender": ["a@evil.test"]}, "then": "reject"}
    created = await admin_client.post("/api/v1/rules", headers=headers, json={"rule": rule})
    assert created.status == 201, await created.text()
    revision = (await created.json())["revision"]["id"]
    for body in ({"rule": rule}, {"position": 0}, {}):
        response = await admin_client.patch("/api/v1/rules/spam", headers=headers, json=body)
        assert response.status == 200, await response.text()
        assert (await response.json())["revision"]["id"] == revision
    assert await _rule_entries(database_url) == ["rule.created"]
