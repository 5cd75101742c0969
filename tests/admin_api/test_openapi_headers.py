"""The OpenAPI document declares the response headers the service sends, and every
route that reads a JSON body refuses one not declared JSON alike (415)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.errors import ApiError, database_busy, database_unavailable
from postwarden_admin_api.send.refusals import Refusal
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
        assert set(too_many["headers"]) == {"Retry-After", "X-Request-Id", *RATE_LIMIT}, label
        for status, answer in spec["responses"].items():
            if status != "default":
                assert RATE_LIMIT <= set(answer.get("headers", {})), (label, status)


async def test_public_answers_declare_no_rate_limit(
    aiohttp_client: AiohttpClient, database_url: str
) -> None:
    _, document = await _document(aiohttp_client, database_url)
    spec = document["paths"]["/healthz"]["get"]
    assert "429" not in spec["responses"]
    assert not RATE_LIMIT & set(spec["responses"]["200"]["headers"])


async def test_every_answer_declares_its_request_id(
    aiohttp_client: AiohttpClient, database_url: str
) -> None:
    _, document = await _document(aiohttp_client, database_url)
    for label, spec in _operations(document):
        for status, answer in spec["responses"].items():
            assert answer["headers"]["X-Request-Id"]["required"], (label, status)


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        pytest.param("trace-01.A_b", True, id="valid-echoed"),
        pytest.param("x" * 65, False, id="too-long-replaced"),
        pytest.param("has space", False, id="bad-character-replaced"),
        pytest.param(None, False, id="none-made"),
    ],
)
async def test_the_request_id_sent_is_what_the_document_declares(
    aiohttp_client: AiohttpClient, database_url: str, sent: str | None, echoed: bool
) -> None:
    client, document = await _document(aiohttp_client, database_url)
    declared = document["paths"]["/healthz"]["get"]["responses"]["200"]["headers"]
    response = await client.get("/healthz", headers={} if sent is None else
                                {"X-Request-Id": sent})
    request_id = response.headers["X-Request-Id"]
    assert re.fullmatch(declared["X-Request-Id"]["schema"]["pattern"], request_id)
    assert (request_id == sent) is echoed


def _retry_later(document: dict[str, Any]) -> list[tuple[ApiError, list[str]]]:
    """Each error that carries a Retry-After of its own, with the operations that may
    answer it: the send API's refusals with one, and database_busy and database_unavailable
    on every route that looks its key up. (A limit's 429 sets its own per answer: declared
    on every 429.)"""
    authenticated = [label for label, spec in _operations(document)
                     if spec.get("security") != []]
    send = ["POST /api/v1/send-email"]
    return [*((refusal.error(), send) for refusal in Refusal if refusal.retry_after),
            (database_busy(), authenticated), (database_unavailable(), authenticated)]


async def test_every_error_with_a_retry_after_declares_it_on_its_status(
    aiohttp_client: AiohttpClient, database_url: str
) -> None:
    _, document = await _document(aiohttp_client, database_url)
    specs = dict(_operations(document))
    for error, labels in _retry_later(document):
        assert "Retry-After" in error.headers, error.code
        for label in labels:
            answer = specs[label]["responses"][str(error.status)]
            assert "Retry-After" in answer["headers"], (label, error.code)


async def test_a_429_carries_every_header_its_document_declares(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client, document = await _document(aiohttp_client, database_url, requests_per_minute=1)
    key = await mint_key(Role.ADMIN)
    assert (await client.get("/api/v1/keys", headers=bearer(key))).status == 200
    refused = await client.get("/api/v1/keys", headers=bearer(key))
    assert refused.status == 429
    declared = document["paths"]["/api/v1/keys"]["get"]["responses"]["429"]["headers"]
    assert all(name in refused.headers for name in declared)  # names are case-insensitive


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
