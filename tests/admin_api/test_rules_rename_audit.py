"""The admin audit entry of a rule renamed through PATCH names the new name too: it named
the old one alone, and nothing in the log told what the rule was called after it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_store import connect
from tests.fixtures.adminapp import bearer


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url  # this test's audit entries alone


async def test_a_rename_is_logged_with_the_new_name(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    rule = {"name": "old", "when": {"sender": ["a@evil.test"]}, "then": "reject"}
    assert (await admin_client.post("/api/v1/rules", headers=headers,
                                    json={"rule": rule})).status == 201
    renamed = {**rule, "name": "new"}
    for path, change in (("old", renamed), ("new", {**renamed, "then": "discard"})):
        response = await admin_client.patch(f"/api/v1/rules/{path}", headers=headers,
                                            json={"rule": change})
        assert response.status == 200, await response.text()
    conn = await connect(database_url)
    try:
        rows = await conn.fetch("SELECT target, summary FROM admin_audit "
                                "WHERE action = 'rule.updated' ORDER BY id")
    finally:
        await conn.close()
    assert [(row["target"], row["summary"].get("renamed_to")) for row in rows] == [
        ("old", "new"), ("new", None)]
