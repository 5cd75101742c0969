"""Rules CRUD on the database-managed policy: ordering, a new active revision per change."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_store import connect
from postwarden_store.policies import fetch_active_sources
from tests.fixtures.adminapp import bearer


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own (in place of the module's shared one): the tests
    here expect the exact list of rules and count revisions, which another test's
    rules would change whatever order the tests run in."""
    return fresh_database_url


def block(name: str, sender: str) -> dict[str, Any]:
    return {"name": name, "when": {"sender": [sender]}, "then": "reject"}


async def _names(client: TestClient[Any, Any], key: str) -> list[str]:
    body = await (await client.get("/api/v1/rules", headers=bearer(key))).json()
    return [rule["name"] for rule in body["rules"]]


async def test_rule_changes_create_active_revisions(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    for name in ("first", "second"):
        response = await admin_client.post("/api/v1/rules", headers=headers,
                                           json={"rule": block(name, f"{name}@evil.test")})
        assert response.status == 201, await response.text()
    response = await admin_client.post("/api/v1/rules", headers=headers, json={
        "rule": block("urgent", "now@evil.test"), "position": 0, "comment": "incident 42"})
    assert (await response.json())["revision"]["comment"] == "incident 42"
    assert await _names(admin_client, admin_key) == ["urgent", "first", "second"]

    response = await admin_client.patch("/api/v1/rules/urgent", headers=headers,
                                        json={"position": 2})
    assert response.status == 200
    assert await _names(admin_client, admin_key) == ["first", "second", "urgent"]
    response = await admin_client.patch("/api/v1/rules/first", headers=headers,
                                        json={"rule": block("first", "changed@evil.test")})
    assert response.status == 200
    response = await admin_client.delete("/api/v1/rules/second", headers=headers)
    assert response.status == 200
    assert await _names(admin_client, admin_key) == ["first", "urgent"]

    revisions = await (await admin_client.get(
        "/api/v1/policies/database-rules/revisions", headers=headers)).json()
    assert len(revisions["revisions"]) == 6
    assert revisions["revisions"][0]["active"] is True
    conn = await connect(database_url)
    try:
        sources = dict(await fetch_active_sources(conn))
    finally:
        await conn.close()
    active = sources[f"database-rules@r{revisions['revisions'][0]['id']}"]
    assert "changed@evil.test" in active and "second@evil.test" not in active


async def test_rule_errors(admin_client: TestClient[Any, Any], admin_key: str) -> None:
    headers = bearer(admin_key)
    await admin_client.post("/api/v1/rules", headers=headers,
                            json={"rule": block("dupe", "a@evil.test")})
    response = await admin_client.post("/api/v1/rules", headers=headers,
                                       json={"rule": block("dupe", "b@evil.test")})
    assert response.status == 409
    response = await admin_client.post("/api/v1/rules", headers=headers, json={
        "rule": {"name": "bad", "when": {"client_ip": ["nope"]}, "then": "reject"}})
    assert response.status == 422
    assert response.status == 422 and (await response.json())["error"]["details"][0]["line"]
    response = await admin_client.post("/api/v1/rules", headers=headers, json={
        "rule": block("late", "c@evil.test"), "position": 99})
    assert response.status == 422
    assert (await admin_client.delete("/api/v1/rules/none", headers=headers)).status == 404


async def test_edits_after_a_rollback_build_on_the_active_revision(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    before = await _names(admin_client, admin_key)
    for rule in (block("undo-keep", "a@evil.test"), block("undo-mistake", "ceo@example.com")):
        response = await admin_client.post("/api/v1/rules", headers=headers, json={"rule": rule})
        assert response.status == 201
    response = await admin_client.post("/api/v1/policies/database-rules/rollback",
                                       headers=headers)
    assert response.status == 200
    rolled_back_to = (await response.json())["id"]
    body = await (await admin_client.get("/api/v1/rules", headers=headers)).json()
    assert body["revision_id"] == rolled_back_to
    assert [rule["name"] for rule in body["rules"]] == [*before, "undo-keep"]

    response = await admin_client.post("/api/v1/rules", headers=headers,
                                       json={"rule": block("undo-other", "x@evil.test")})
    assert response.status == 201
    assert [rule["name"] for rule in (await response.json())["rules"]] == [
        *before, "undo-keep", "undo-other"]
    conn = await connect(database_url)
    try:
        sources = dict(await fetch_active_sources(conn))
    finally:
        await conn.close()
    [active] = [source for label, source in sources.items()
                if label.startswith("database-rules@")]
    assert "x@evil.test" in active and "ceo@example.com" not in active
