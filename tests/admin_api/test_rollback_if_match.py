"""An operator rolls back the Rules API change they saw while another operator adds a rule:
a rollback sent with If-Match naming the revision seen is refused 412 once that is no
longer active, rather than silently undoing the other operator's change."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url  # the exact rules of this test alone


def block(name: str) -> dict[str, Any]:
    return {"name": name, "when": {"sender": [f"{name}@evil.test"]}, "then": "reject"}


async def _rules(client: TestClient[Any, Any], headers: dict[str, str]) -> Any:
    return await (await client.get("/api/v1/rules", headers=headers)).json()


async def test_a_rollback_of_a_revision_no_longer_active_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    headers = bearer(admin_key)
    for name in ("first", "mistake"):
        response = await admin_client.post("/api/v1/rules", headers=headers,
                                           json={"rule": block(name)})
        assert response.status == 201, await response.text()
    seen = await admin_client.get("/api/v1/rules", headers=headers)
    seen_tag, seen_id = seen.headers["ETag"], (await seen.json())["revision_id"]
    added = await admin_client.post("/api/v1/rules", headers=headers,
                                    json={"rule": block("urgent")})  # the other operator
    assert added.status == 201

    for path, body in (("/api/v1/policies/database-rules/rollback", None),
                       ("/api/v1/policies/database-rules/rollback", {"revision_id": 1})):
        stale = await admin_client.post(path, json=body,
                                        headers={**headers, "If-Match": seen_tag})
        assert stale.status == 412, await stale.text()
        assert (await stale.json())["error"]["code"] == "precondition_failed"
    names = [rule["name"] for rule in (await _rules(admin_client, headers))["rules"]]
    assert names == ["first", "mistake", "urgent"]  # the urgent rule stays

    current = added.headers["ETag"]
    rolled = await admin_client.post("/api/v1/policies/database-rules/rollback",
                                     json={"revision_id": 1},
                                     headers={**headers, "If-Match": current})
    assert rolled.status == 200, await rolled.text()
    assert (await _rules(admin_client, headers))["revision_id"] == 1 != seen_id


async def test_an_activation_sent_with_a_stale_if_match_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    headers = bearer(admin_key)
    ids = []
    for sender in ("a@evil.test", "b@evil.test"):
        source = ("version: 1\nname: ci-policy\nrules:\n  - name: r\n"
                  f"    when: {{sender: ['{sender}']}}\n    then: reject\n")
        uploaded = await admin_client.post("/api/v1/policies", data=source, headers={
            **headers, "Content-Type": "application/yaml"})
        assert uploaded.status == 201, await uploaded.text()
        ids.append((await uploaded.json())["id"])
    # "none", the rules' ETag before any revision: only while the policy has none active.
    first = await admin_client.post(f"/api/v1/revisions/{ids[0]}/activate",
                                    headers={**headers, "If-Match": '"none"'})
    assert first.status == 200, await first.text()
    for seen in (f'"{ids[1]}"', '"none"'):
        stale = await admin_client.post(f"/api/v1/revisions/{ids[1]}/activate",
                                        headers={**headers, "If-Match": seen})
        assert stale.status == 412, seen
    fresh = await admin_client.post(f"/api/v1/revisions/{ids[1]}/activate",
                                    headers={**headers, "If-Match": f'"{ids[0]}"'})
    assert fresh.status == 200 and (await fresh.json())["active"] is True
