"""The OpenAPI document declares the response headers the service sends, and every
route that reads a JSON body refuses one not declared JSON alike (415)."""

from __future__ import annotations

from typing import Any

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

RATE_LIMIT = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{method.upper()} {path}", spec) for path, methods in document["paths"].items()
            for method, spec in methods.items()]


async def _document(aiohttp_client: AiohttpClient, database_url: str,
                    **overrides: Any) -> tuple[Any, dict[str, Any]]:
    client = await aiohttp_client(create_app(settings_for(database_url, **overrides)))
    return client, await (await client.get("/api/v1/openapi.json")).json()


async def test_every_authenticated_answer_declares_the_rate_limit_headers(
    aiohttp_client: AiohttpClient, database_url: str
) -> None:
    _, document = await _document(aiohttp_client, database_url)
    authenticated = [(label, spec) for label, spec in _operations(document)
                     if spec.get("security") != []]
    assert authenticated
    for label, spec in authenticated:
        too_many = spec["responses"]["429"]
        assert set(too_many["headers"]) == {"Retry-After", *RATE_LIMIT}, label
        for status, answer in spec["responses"].items():
            if status != "default":
                assert RATE_LIMIT <= set(answer.get("headers", {})), (label, status)


async def test_public_answers_declare_no_rate_limit(
    aiohttp_client: AiohttpClient, database_url: str
) -> None:
    _, document = await _document(aiohttp_client, database_url)
    spec = document["paths"]["/healthz"]["get"]
    assert "429" not in spec["responses"]
    assert "headers" not in spec["responses"]["200"]


async def test_a_429_carries_every_header_its_document_declares(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client, document = await _document(aiohttp_client, database_url, requests_per_minute=1)
    key = await mint_key(Role.ADMIN)
    assert (await client.get("/api/v1/keys", headers=bearer(key))).status == 200
    refused = await client.get("/api/v1/keys", headers=bearer(key))
    assert refused.status == 429
    declared = document["paths"]["/api/v1/keys"]["get"]["responses"]["429"]["headers"]
    assert set(declared) <= set(refused.headers)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("put", "/api/v1/settings", id="settings"),
        pytest.param("post", "/api/v1/keys", id="keys"),
        pytest.param("post", "/api/v1/rules", id="rules"),
    ],
)
async def test_json_routes_refuse_a_body_not_declared_json(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    method: str, path: str,
) -> None:
    client, _ = await _document(aiohttp_client, database_url)
    headers = {**bearer(await mint_key(Role.ADMIN)), "Content-Type": "text/plain"}
    response = await getattr(client, method)(path, data=b"{}", headers=headers)
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"
