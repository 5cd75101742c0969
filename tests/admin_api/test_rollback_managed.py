"""Rolling back database-rules restores only what the Rules API wrote: a revision
uploaded by hand before uploads of that name were refused may set what the Rules API
never writes (here: report mode, so its rules would stop rejecting anything)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.admin_api.managed_seed import seed_managed
from tests.fixtures.adminapp import bearer

pytestmark = pytest.mark.postgres

HAND_MADE = """version: 1
name: database-rules
mode: report
rules:
  - name: hand-made
    when: {sender: [a@evil.test]}
    then: reject
"""


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests count database-rules revisions."""
    return fresh_database_url


def _block(name: str) -> dict[str, Any]:
    return {"name": name, "when": {"sender": [f"{name}@evil.test"]}, "then": "reject"}


async def _add(client: TestClient[Any, Any], key: str, name: str) -> int:
    response = await client.post("/api/v1/rules", headers=bearer(key),
                                 json={"rule": _block(name)})
    assert response.status == 201, await response.text()
    revision: int = (await response.json())["revision"]["id"]
    return revision


async def _rollback(client: TestClient[Any, Any], key: str, **body: int) -> Any:
    return await client.post("/api/v1/policies/database-rules/rollback", headers=bearer(key),
                             json=body)


async def _active(client: TestClient[Any, Any], key: str) -> int:
    body = await (await client.get("/api/v1/rules", headers=bearer(key))).json()
    active: int = body["revision_id"]
    return active


async def test_a_hand_uploaded_revision_is_not_restored(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    hand_made = await seed_managed(database_url, HAND_MADE)
    generated = await _add(admin_client, admin_key, "first")
    for body in ({}, {"revision_id": hand_made}):  # the one before the active, or named
        response = await _rollback(admin_client, admin_key, **body)
        assert response.status == 422, body
        error = (await response.json())["error"]
        assert error["code"] == "reserved_policy_name"
        assert f"revision {hand_made} " in error["message"]
        assert await _active(admin_client, admin_key) == generated


async def test_a_revision_the_rules_api_wrote_is_restored(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    await seed_managed(database_url, HAND_MADE)
    first = await _add(admin_client, admin_key, "first")
    await _add(admin_client, admin_key, "second")
    response = await _rollback(admin_client, admin_key)
    assert response.status == 200, await response.text()
    assert (await response.json())["id"] == first
    assert await _active(admin_client, admin_key) == first
