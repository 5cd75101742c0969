"""A request naming two different keys (a bearer token and X-Api-Key) is refused, not
served as whichever is read first: a proxy in front may check the other one."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey


async def test_a_bearer_key_and_another_x_api_key_are_a_bad_request(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    auditor = await mint_key(Role.AUDITOR)
    # It was served as the admin key, the auditor's X-Api-Key dropped unseen.
    response = await admin_client.get("/api/v1/keys", headers={
        "Authorization": f"Bearer {admin_key}", "X-Api-Key": auditor})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "bad_request"


async def test_one_key_in_both_headers_or_x_api_key_beside_basic_auth_is_taken(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    for headers in ({"Authorization": f"Bearer {admin_key}", "X-Api-Key": admin_key},
                    {"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": admin_key}):
        response = await admin_client.get("/api/v1/keys", headers=headers)
        assert response.status == 200, (headers, await response.text())
