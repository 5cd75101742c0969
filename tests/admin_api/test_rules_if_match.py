"""Two operators editing the rules at once: each change sent with the ETag of the rules it
was made on (If-Match) is refused 412 once the other's change is active, instead of
silently undoing it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url  # the exact rules of this test alone


def block(sender: str) -> dict[str, Any]:
    return {"name": "spam", "when": {"sender": [sender]}, "then": "reject"}


async def test_a_change_on_rules_read_before_another_change_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    headers = bearer(admin_key)
    created = await admin_client.post("/api/v1/rules", headers=headers,
                                      json={"rule": block("a@evil.test")})
    assert created.status == 201, await created.text()
    read = await admin_client.get("/api/v1/rules", headers=headers)
    base = read.headers["ETag"]
    assert base == created.headers["ETag"] == f'"{(await read.json())["revision_id"]}"'

    first = await admin_client.patch("/api/v1/rules/spam", json={"rule": block("b@evil.test")},
                                     headers={**headers, "If-Match": base})
    assert first.status == 200, await first.text()
    for method, path, body in (("PATCH", "/api/v1/rules/spam", {"rule": block("c@evil.test")}),
                               ("DELETE", "/api/v1/rules/spam", None),
                               ("POST", "/api/v1/rules", {"rule": {**block("d"), "name": "x"}})):
        stale = await admin_client.request(method, path, json=body,
                                           headers={**headers, "If-Match": base})
        assert stale.status == 412, (method, await stale.text())
        assert (await stale.json())["error"]["code"] == "precondition_failed"
    rules = (await (await admin_client.get("/api/v1/rules", headers=headers)).json())["rules"]
    assert rules == [block("b@evil.test")]  # the first operator's change stands

    current = first.headers["ETag"]
    for match in (current, f'"1", {current}', "*"):
        again = await admin_client.patch("/api/v1/rules/spam", json={"position": 0},
                                         headers={**headers, "If-Match": match})
        assert again.status == 200, (match, await again.text())


async def test_an_if_match_before_any_rule_says_none_is_active(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # It said "the active revision is None", Python's word for it.
    refused = await admin_client.post("/api/v1/rules", json={"rule": block("a@evil.test")},
                                      headers={**bearer(admin_key), "If-Match": "*"})
    assert refused.status == 412, await refused.text()
    error = (await refused.json())["error"]
    assert error["code"] == "precondition_failed"
    assert error["details"] == [{"field": "If-Match", "message": "no revision is active"}]


async def test_two_first_changes_on_no_rules_the_second_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # No revision yet: the list had no ETag, so neither operator could guard a first change.
    headers = bearer(admin_key)
    reads = [await admin_client.get("/api/v1/rules", headers=headers) for _ in range(2)]
    tags = [read.headers.get("ETag") for read in reads]
    assert tags[0] is not None and tags[0] == tags[1]
    assert (await reads[0].json()) == {"revision_id": None, "rules": []}

    first = await admin_client.post("/api/v1/rules", json={"rule": block("a@evil.test")},
                                    headers={**headers, "If-Match": tags[0]})
    assert first.status == 201, await first.text()
    second = await admin_client.post("/api/v1/rules",
                                     json={"rule": {**block("b@evil.test"), "name": "other"}},
                                     headers={**headers, "If-Match": tags[1]})
    assert second.status == 412, await second.text()
    error = (await second.json())["error"]
    assert error["code"] == "precondition_failed"
    active = (await first.json())["revision"]["id"]
    assert error["details"] == [{"field": "If-Match",
                                 "message": f"the active revision is {active}"}]
    listed = await (await admin_client.get("/api/v1/rules", headers=headers)).json()
    assert listed["rules"] == [block("a@evil.test")]  # the first operator's change stands
