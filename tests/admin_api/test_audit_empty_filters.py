"""An audit filter given empty is refused, naming it, where no event can have it empty:
it answered 200 and nothing, as if no event matched."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import bearer

EMPTY_NEVER_STORED = ["recipient", "rule", "queue_id", "message_uid", "message_id",
                      "auth_user", "header_from", "flag"]


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/export"])
@pytest.mark.parametrize("name", EMPTY_NEVER_STORED)
async def test_an_empty_filter_no_event_can_match_is_refused(
    admin_client: TestClient[Any, Any], role_keys: dict[Role, str], name: str, path: str
) -> None:
    response = await admin_client.get(path, params={name: ""},
                                      headers=bearer(role_keys[Role.AUDITOR]))
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["details"] == [{
        "field": name,
        "message": "empty: no event has it; leave the parameter out to match any"}]


async def test_an_empty_sender_still_searches_for_the_null_sender(
    admin_client: TestClient[Any, Any], role_keys: dict[Role, str]
) -> None:
    response = await admin_client.get("/api/v1/audit", params={"sender": ""},
                                      headers=bearer(role_keys[Role.AUDITOR]))
    assert response.status == 200, await response.text()
