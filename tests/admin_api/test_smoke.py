"""The application answers: health, request ids, JSON errors, authentication."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer


async def test_healthz_and_request_id(admin_client: TestClient[Any, Any]) -> None:
    response = await admin_client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    assert len(response.headers["X-Request-Id"]) == 32


async def test_readyz_with_current_schema(admin_client: TestClient[Any, Any]) -> None:
    response = await admin_client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["status"] == "ready"


async def test_missing_key_is_401_json(admin_client: TestClient[Any, Any]) -> None:
    response = await admin_client.get("/api/v1/keys")
    assert response.status == 401
    body = await response.json()
    assert body == {"error": {"code": "unauthenticated",
                              "message": "a valid API key is required", "details": []}}
    assert response.headers["X-Request-Id"]


async def test_admin_key_lists_keys(admin_client: TestClient[Any, Any], admin_key: str) -> None:
    response = await admin_client.get("/api/v1/keys", headers=bearer(admin_key))
    assert response.status == 200, await response.text()
    keys = (await response.json())["keys"]
    assert admin_key.split("_")[1] in {k["key_id"] for k in keys}
    assert response.headers["RateLimit-Limit"] == "100000"
    assert admin_key not in await response.text()
