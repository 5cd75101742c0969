"""Rotating a key refuses a body it does not understand instead of using the default grace.

An admin rotating a leaked key with a misspelt ``grace_seconds`` (``{"grace": 0}``)
would otherwise get a 201 while the leaked key kept working for the default day.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer


async def test_a_misspelt_grace_is_refused_and_the_key_is_not_rotated(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    leaked = await mint_key(Role.OPERATOR)
    leaked_id = leaked.split("_")[1]
    response = await admin_client.post(f"/api/v1/keys/{leaked_id}/rotate",
                                       headers=bearer(admin_key), json={"grace": 0})
    assert response.status == 422
    assert (await response.json())["error"] == {
        "code": "validation_failed", "message": "request is invalid",
        "details": [{"field": "grace", "message": "unknown field"}],
    }
    listed = await admin_client.get("/api/v1/keys", headers=bearer(admin_key))
    (shown,) = [k for k in (await listed.json())["keys"] if k["key_id"] == leaked_id]
    assert shown["rotated_to"] is None and shown["expires_at"] is None


async def test_every_problem_of_a_rotation_body_is_listed(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    key_id = (await mint_key(Role.AUDITOR)).split("_")[1]
    response = await admin_client.post(f"/api/v1/keys/{key_id}/rotate", headers=bearer(admin_key),
                                       json={"grace_seconds": -1, "Grace_Seconds": 0})
    assert response.status == 422
    assert [p["field"] for p in (await response.json())["error"]["details"]] == [
        "Grace_Seconds", "grace_seconds"]
