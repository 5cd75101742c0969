"""A << key in a rule sent to the Rules API is refused as a policy file refuses a merge
key: the same message, code validation_failed, and no revision."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

RULES = "/api/v1/rules"
REFUSED = ("YAML merge keys (<<) are not supported: alias the whole value, or write its "
           "keys out")
BASE = {"then": "reject", "when": {"sender": ["a@evil.test"]}}


MERGED = [
    {"name": "merged", "<<": BASE},
    {"name": "merged", "then": "reject", "when": {"all": [{"<<": {"flag": ["malformed"]}}]}},
    {"name": "merged", "then": "reject", "when": {"header": {"<<": ["x"]}}},
]


async def test_a_merge_key_in_a_rule_is_refused_as_in_a_policy_file(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """It was "unknown key '<<' in rule" (or in condition), and in a header condition a
    header named "<<": a YAML rule converted to JSON with its merges left unresolved."""
    headers = bearer(admin_key)
    created = await admin_client.post(RULES, headers=headers,
                                      json={"rule": {"name": "kept", **BASE}})
    assert created.status == 201, await created.text()
    before = await (await admin_client.get(RULES, headers=headers)).json()
    for response in [
        *[await admin_client.post(RULES, headers=headers, json={"rule": r}) for r in MERGED],
        *[await admin_client.patch(f"{RULES}/kept", headers=headers, json={"rule": r})
          for r in MERGED],
    ]:
        assert response.status == 422, await response.text()
        assert (await response.json())["error"] == {
            "code": "validation_failed", "message": "request is invalid",
            "details": [{"field": "rule", "message": REFUSED}]}
    assert await (await admin_client.get(RULES, headers=headers)).json() == before

    uploaded = await admin_client.post(
        "/api/v1/policies", headers={**headers, "Content-Type": "application/yaml"},
        data="version: 1\nname: other\nx-base: &b {then: reject}\nrules:\n"
             "  - name: merged\n    <<: *b\n")
    assert uploaded.status == 422, await uploaded.text()
    error = (await uploaded.json())["error"]
    assert error["code"] == "validation_failed"
    assert [d["message"] for d in error["details"]] == [f"rule 'merged': {REFUSED}"]
