"""A number in a query is read only as written without a sign or a leading zero, as an
id in a path is: one resource, one URL, and nothing read as another number."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

# Each route's numeric query parameters, with a value in range that it takes.
NUMBERS = [
    ("/api/v1/policies/any/revisions", "limit", "10"),
    ("/api/v1/policies/any/revisions", "before", "7"),
    ("/api/v1/admin-audit", "limit", "10"),
    ("/api/v1/admin-audit", "before", "7"),
    ("/api/v1/audit", "limit", "10"),
    ("/api/v1/stats", "top", "5"),
    ("/api/v1/suppressions", "limit", "10"),
    ("/api/v1/messages", "limit", "10"),
    ("/api/v1/webhooks/1/deliveries", "limit", "10"),
    ("/api/v1/webhooks/1/deliveries", "before_id", "7"),
]


@pytest.mark.parametrize(("path", "name", "value"), NUMBERS,
                         ids=[f"{path}?{name}" for path, name, _ in NUMBERS])
async def test_a_query_number_with_a_leading_zero_is_refused_naming_it(
    admin_client: TestClient[Any, Any], admin_key: str, path: str, name: str, value: str
) -> None:
    # limit=010 listed 10 and before_id=007 paged from 7, where /revisions/007 was 404:
    # a client building URLs from a zero-padded counter got another page than it named.
    response = await admin_client.get(path, headers=bearer(admin_key),
                                      params={name: f"0{value}"})
    assert response.status == 422, await response.text()
    details = (await response.json())["error"]["details"]
    assert [d["field"] for d in details] == [name]
    assert details[0]["message"].endswith("written without a leading zero")
    written = await admin_client.get(path, headers=bearer(admin_key), params={name: value})
    assert written.status in (200, 404), await written.text()  # no such policy or webhook


async def test_zero_itself_is_told_its_range_alone(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.get("/api/v1/admin-audit", headers=bearer(admin_key),
                                      params={"limit": "0"})
    assert (await response.json())["error"]["details"] == [
        {"field": "limit", "message": "expected 1..1000"}]
