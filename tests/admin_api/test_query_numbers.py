"""A number in a query (or a policy test's revision_id) is read only as written without a
sign or a leading zero, as an id in a path is: one resource, one URL, and nothing read as
another number."""

from __future__ import annotations

from typing import Any

import aiohttp
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


async def test_a_policy_tests_revision_id_with_a_leading_zero_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # The form field was read as the revision 7 (or 1), where /revisions/007 is not found.
    uploaded = await admin_client.post(
        "/api/v1/policies", headers={**bearer(admin_key), "Content-Type": "application/yaml"},
        data=b"version: 1\nname: zero-padded\nrules:\n  - name: r\n    then: reject\n")
    assert uploaded.status in (200, 201), await uploaded.text()
    revision = str((await uploaded.json())["id"])
    form = aiohttp.FormData()
    form.add_field("message", b"Subject: s\r\n\r\nbody\r\n", filename="m.eml",
                   content_type="message/rfc822")
    form.add_field("revision_id", f"0{revision}")
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 422, await response.text()
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["revision_id"]
