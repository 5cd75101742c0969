"""The Rules API refuses a body field it does not know instead of dropping it: a
misspelt ``position`` would put an urgent blocking rule last, unseen."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

RULES = "/api/v1/rules"


def block(name: str) -> dict[str, Any]:
    return {"name": name, "when": {"sender": [f"{name}@evil.test"]}, "then": "reject"}


async def _rules(client: TestClient[Any, Any], key: str) -> dict[str, Any]:
    response = await client.get(RULES, headers=bearer(key))
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_an_unknown_field_is_listed_first_and_nothing_changes(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    headers = bearer(admin_key)
    created = await admin_client.post(RULES, headers=headers, json={"rule": block("typo-kept")})
    assert created.status == 201, await created.text()
    before = await _rules(admin_client, admin_key)

    refused = [
        await admin_client.post(RULES, headers=headers, json={
            "rule": block("typo-new"), "postion": 0, "comment": 5, "Comment": "x"}),
        await admin_client.patch(f"{RULES}/typo-kept", headers=headers, json={
            "postion": 0, "comment": 5, "Comment": "x"}),
    ]
    for response in refused:
        assert response.status == 422, await response.text()
        assert (await response.json())["error"] == {
            "code": "validation_failed", "message": "request is invalid", "details": [
                {"field": "Comment", "message": "unknown field"},
                {"field": "postion", "message": "unknown field"},
                {"field": "comment", "message": "expected at most 1000 characters"},
            ],
        }
    assert await _rules(admin_client, admin_key) == before  # no new revision either
