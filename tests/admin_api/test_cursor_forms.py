"""A cursor is the list the service wrote, nothing else JSON unpacks alike."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

WHEN, ID = "2026-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000"


def _cursor(fields: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/messages"])
async def test_a_cursor_that_is_an_object_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, path: str
) -> None:
    # Its keys unpacked as a cursor's fields: a page started where no page ends.
    response = await admin_client.get(path, headers=bearer(admin_key),
                                      params={"cursor": _cursor({WHEN: 1, ID: 2})})
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["details"] == [
        {"field": "cursor", "message": "invalid cursor"}]


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/messages"])
async def test_a_cursor_as_written_is_taken(
    admin_client: TestClient[Any, Any], admin_key: str, path: str
) -> None:
    response = await admin_client.get(path, headers=bearer(admin_key),
                                      params={"cursor": _cursor([WHEN, ID])})
    assert response.status == 200, await response.text()
