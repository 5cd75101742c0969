"""POST /api/v1/suppressions takes exactly the fields its published schema lists: a
field the schema gained but the route did not would be refused as unknown."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

SUPPRESSIONS = "/api/v1/suppressions"


async def test_the_route_refuses_only_what_its_schema_leaves_out(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    schema = document["paths"][SUPPRESSIONS]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert schema["additionalProperties"] is False
    # Every listed field (null: refused for its value, if at all), and one more.
    body = {**dict.fromkeys(schema["properties"]), "not_in_the_schema": "x"}
    response = await admin_client.post(SUPPRESSIONS, headers=bearer(admin_key), json=body)
    assert response.status == 422, await response.text()
    unknown = [problem["field"] for problem in (await response.json())["error"]["details"]
               if problem["message"] == "unknown field"]
    assert unknown == ["not_in_the_schema"]


async def test_a_null_detail_is_taken_as_the_schema_says(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """A client generated from the schema may send ``"detail": null``: the schema must say
    null is allowed, as the route takes it (as if left out)."""
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    detail = document["paths"][SUPPRESSIONS]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["detail"]
    assert "null" in detail["type"]
    body = {"address": "null-detail@example.org", "detail": None}
    response = await admin_client.post(SUPPRESSIONS, headers=bearer(admin_key), json=body)
    assert response.status == 201, await response.text()
