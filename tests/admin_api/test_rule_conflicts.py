"""docs/api.md's 409 codes of /api/v1/rules: ``rule_exists`` (adding a rule, or
renaming one, to a name taken) and ``too_many_rules`` (adding past MAX_RULES).
A refused change leaves the active revision as it was."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.routes_rules import MANAGED_POLICY, MAX_RULES, managed_document
from tests.admin_api.managed_seed import seed_managed
from tests.admin_api.test_conflict_codes import error_code
from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests count the managed policy's rules."""
    return fresh_database_url


def block(name: str) -> dict[str, Any]:
    return {"name": name, "when": {"sender": [f"{name}@evil.test"]}, "then": "reject"}


async def _active(client: Client, key: str) -> dict[str, Any]:
    response = await client.get("/api/v1/rules", headers=bearer(key))
    assert response.status == 200, await response.text()
    listed: dict[str, Any] = await response.json()
    return listed


async def _add(client: Client, key: str, name: str) -> None:
    response = await client.post("/api/v1/rules", headers=bearer(key), json={"rule": block(name)})
    assert response.status == 201, await response.text()


async def test_adding_a_rule_under_a_taken_name_is_rule_exists(
    admin_client: Client, admin_key: str
) -> None:
    await _add(admin_client, admin_key, "taken")
    before = await _active(admin_client, admin_key)
    response = await admin_client.post("/api/v1/rules", headers=bearer(admin_key),
                                       json={"rule": {**block("taken"), "then": "accept"}})
    assert response.status == 409
    assert await error_code(response) == "rule_exists"
    assert await _active(admin_client, admin_key) == before


async def test_renaming_a_rule_to_a_taken_name_is_rule_exists(
    admin_client: Client, admin_key: str
) -> None:
    await _add(admin_client, admin_key, "first")
    await _add(admin_client, admin_key, "second")
    before = await _active(admin_client, admin_key)
    response = await admin_client.patch("/api/v1/rules/second", headers=bearer(admin_key),
                                        json={"rule": block("first")})
    assert response.status == 409
    assert await error_code(response) == "rule_exists"
    assert await _active(admin_client, admin_key) == before
    # Replacing a rule under its own name is no conflict.
    kept = await admin_client.patch("/api/v1/rules/second", headers=bearer(admin_key),
                                    json={"rule": {**block("second"), "then": "discard"}})
    assert kept.status == 200, await kept.text()


async def test_adding_past_the_most_rules_is_too_many_rules(
    admin_client: Client, admin_key: str, database_url: str
) -> None:
    """The managed policy is brought to MAX_RULES by a revision seeded in the store (the
    policies routes refuse its name; the revision list, not /api/v1/rules, checks the
    outcome: it is quicker to read)."""
    full = managed_document([block(f"r{i}") for i in range(MAX_RULES)])
    revision = await seed_managed(database_url, full)

    response = await admin_client.post("/api/v1/rules", headers=bearer(admin_key),
                                       json={"rule": block("one-more")})
    assert response.status == 409
    assert await error_code(response) == "too_many_rules"
    listed = await (await admin_client.get(f"/api/v1/policies/{MANAGED_POLICY}/revisions",
                                           headers=bearer(admin_key))).json()
    assert [(r["id"], r["active"]) for r in listed["revisions"]] == [(revision, True)]
