"""The key routes declared no error response but ``default``: a client generated from the
document could not tell a key revoked already (404) from one rotated before (409
``already_rotated``) or a misspelt ``grace_seconds`` (422) but by reading docs/api.md.
Each now declares every error status it answers with, its codes an ``enum``, checked
here against the service's real answers."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

from .test_openapi_error_codes import _codes

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]
KEYS, KEY = "/api/v1/keys", "/api/v1/keys/{key_id}"
ROTATE = "/api/v1/keys/{key_id}/rotate"
JSON = {"Content-Type": "application/json"}


async def _document(client: Client) -> dict[str, Any]:
    document: dict[str, Any] = await (await client.get("/api/v1/openapi.json")).json()
    return document


async def test_every_error_status_of_the_key_routes_lists_its_codes(admin_client: Client
                                                                    ) -> None:
    paths = (await _document(admin_client))["paths"]
    unlisted = [(method, path, status)
                for path in (KEYS, KEY, ROTATE) for method, spec in paths[path].items()
                for status, answer in spec["responses"].items()
                if status != "default" and int(status) >= 400 and not _codes(answer)]
    assert unlisted == []
    assert "404" in paths[KEY]["delete"]["responses"]


async def _refusals(client: Client, admin: str, mint_key: MintKey
                    ) -> list[tuple[str, str, str, Any, dict[str, str], int]]:
    """(method, path template, url, body, headers, status expected) of refused requests."""
    revoked = (await mint_key(Role.OPERATOR)).split("_")[1]
    await client.delete(f"{KEYS}/{revoked}", headers=bearer(admin))
    rotated = (await mint_key(Role.OPERATOR)).split("_")[1]
    first = await client.post(f"{KEYS}/{rotated}/rotate", headers=bearer(admin), json={})
    assert first.status == 201
    operator = await mint_key(Role.OPERATOR)
    return [
        ("get", KEYS, KEYS, None, bearer(operator), 403),
        ("post", KEYS, KEYS, b"{}", JSON, 422),
        ("post", KEYS, KEYS, b"{", JSON, 400),
        ("post", KEYS, KEYS, b"{}", {"Content-Type": "text/plain"}, 415),
        ("delete", KEY, f"{KEYS}/nosuch", None, {}, 404),
        ("delete", KEY, f"{KEYS}/{revoked}", None, {}, 404),
        ("post", ROTATE, f"{KEYS}/nosuch/rotate", b"{}", JSON, 404),
        ("post", ROTATE, f"{KEYS}/{rotated}/rotate", b"{}", JSON, 409),
        ("post", ROTATE, f"{KEYS}/{rotated}/rotate", b'{"grace_secs": 0}', JSON, 422),
    ]


async def test_a_refusal_of_a_key_route_is_answered_as_declared(
    admin_client: Client, admin_key: str, mint_key: MintKey
) -> None:
    paths = (await _document(admin_client))["paths"]
    wrong = []
    for method, template, url, body, headers, status in await _refusals(
            admin_client, admin_key, mint_key):
        response = await admin_client.request(method.upper(), url, data=body,
                                              headers={**bearer(admin_key), **headers})
        code = (await response.json())["error"]["code"]
        declared = paths[template][method]["responses"].get(str(response.status), {})
        if response.status != status or code not in (_codes(declared) or []):
            wrong.append((method, url, response.status, code))
    assert wrong == []
