"""The application answers: health, request ids, JSON errors, authentication."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, bearer, settings_for


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


async def test_a_key_in_x_api_key_works_and_the_document_says_so(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """docs/api.md: the key as a bearer token or in X-Api-Key; the OpenAPI document
    offers both."""
    response = await admin_client.get("/api/v1/keys", headers={"X-Api-Key": admin_key})
    assert response.status == 200, await response.text()
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    offered = [schemes[name] for requirement in document["security"] for name in requirement]
    assert {"type": "http", "scheme": "bearer"} in offered
    assert {"type": "apiKey", "in": "header", "name": "X-Api-Key"} in offered


async def test_a_request_id_sent_comes_back_and_a_bad_one_is_replaced(
    admin_client: TestClient[Any, Any]
) -> None:
    response = await admin_client.get("/healthz", headers={"X-Request-Id": "abc.DEF-1_2"})
    assert response.headers["X-Request-Id"] == "abc.DEF-1_2"
    response = await admin_client.get("/healthz", headers={"X-Request-Id": "a b"})
    assert len(response.headers["X-Request-Id"]) == 32


async def test_the_policy_test_schema_names_every_field_of_the_answer(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    policy = ("version: 1\nname: smoke-hold\nrules:\n  - name: hold-all\n"
              "    then: quarantine\n    message: held for review\n")
    form = aiohttp.FormData()
    form.add_field("message", b"Subject: hi\r\n\r\nbody\r\n", filename="m.eml",
                   content_type="message/rfc822")
    form.add_field("policy", policy)
    form.add_field("recipients", "a@example.com")
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["quarantine_reason"] == "held for review"
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    schema = document["paths"]["/api/v1/policies/test"]["post"]["responses"]["200"]
    assert set(answer) == set(schema["content"]["application/json"]["schema"]["properties"])
    readyz = document["paths"]["/readyz"]["get"]["responses"]["503"]
    assert "migrations pending" in readyz["description"]


async def test_readyz_is_503_once_a_migration_is_pending(
    aiohttp_client: AiohttpClient, fresh_database_url: str
) -> None:
    """The service refuses to start with a migration pending
    (tests/admin_api/test_startup_schema.py); one the database loses under a running
    service (another database restored at its address) makes /readyz 503."""
    client = await aiohttp_client(create_app(settings_for(fresh_database_url)))
    conn = await connect(fresh_database_url)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE version = "
                           "(SELECT max(version) FROM schema_migrations)")
    finally:
        await conn.close()
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "unready", "problem": "migrations pending"}
