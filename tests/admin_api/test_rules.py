"""Rules CRUD on the database-managed policy: ordering, a new active revision per change."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_policies import Envelope, evaluate_message, load_policy_set_from_sources
from postwarden_store import connect
from postwarden_store.policies import fetch_active_sources
from tests.admin_api.managed_seed import seed_managed
from tests.fixtures.adminapp import bearer


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own (in place of the module's shared one): the tests
    here expect the exact list of rules and count revisions, which another test's
    rules would change whatever order the tests run in."""
    return fresh_database_url


def block(name: str, sender: str) -> dict[str, Any]:
    return {"name": name, "when": {"sender": [sender]}, "then": "reject"}


async def _names(client: TestClient[Any, Any], key: str) -> list[str]:
    body = await (await client.get("/api/v1/rules", headers=bearer(key))).json()
    return [rule["name"] for rule in body["rules"]]


async def test_rule_changes_create_active_revisions(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    for name in ("first", "second"):
        response = await admin_client.post("/api/v1/rules", headers=headers,
                                           json={"rule": block(name, f"{name}@evil.test")})
        assert response.status == 201, await response.text()
    response = await admin_client.post("/api/v1/rules", headers=headers, json={
        "rule": block("urgent", "now@evil.test"), "position": 0, "comment": "incident 42"})
    assert (await response.json())["revision"]["comment"] == "incident 42"
    assert await _names(admin_client, admin_key) == ["urgent", "first", "second"]

    response = await admin_client.patch("/api/v1/rules/urgent", headers=headers,
                                        json={"position": 2})
    assert response.status == 200
    assert await _names(admin_client, admin_key) == ["first", "second", "urgent"]
    response = await admin_client.patch("/api/v1/rules/first", headers=headers,
                                        json={"rule": block("first", "changed@evil.test")})
    assert response.status == 200
    response = await admin_client.delete("/api/v1/rules/second", headers=headers)
    assert response.status == 200
    assert await _names(admin_client, admin_key) == ["first", "urgent"]

    revisions = await (await admin_client.get(
        "/api/v1/policies/database-rules/revisions", headers=headers)).json()
    assert len(revisions["revisions"]) == 6
    assert revisions["revisions"][0]["active"] is True
    conn = await connect(database_url)
    try:
        sources = dict(await fetch_active_sources(conn))
    finally:
        await conn.close()
    active = sources[f"database-rules@r{revisions['revisions'][0]['id']}"]
    assert "changed@evil.test" in active and "second@evil.test" not in active


async def test_rule_errors(admin_client: TestClient[Any, Any], admin_key: str) -> None:
    headers = bearer(admin_key)
    await admin_client.post("/api/v1/rules", headers=headers,
                            json={"rule": block("dupe", "a@evil.test")})
    response = await admin_client.post("/api/v1/rules", headers=headers,
                                       json={"rule": block("dupe", "b@evil.test")})
    assert response.status == 409
    response = await admin_client.post("/api/v1/rules", headers=headers, json={
        "rule": {"name": "bad", "when": {"client_ip": ["nope"]}, "then": "reject"}})
    assert response.status == 422
    detail = (await response.json())["error"]["details"][0]
    assert detail["field"] == "rule"  # named as every 422 names its fields
    response = await admin_client.post("/api/v1/rules", headers=headers, json={
        "rule": block("late", "c@evil.test"), "position": 99})
    assert response.status == 422
    assert (await admin_client.delete("/api/v1/rules/none", headers=headers)).status == 404


async def test_a_rule_that_does_not_load_is_named_not_a_revision_never_stored(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # Each attempt named "database-rules@r1", then r2, r3: the revision it would have been,
    # never stored, at a line of a document the client never saw.
    headers = bearer(admin_key)
    for sender in ("first@evil.test", "second@evil.test"):
        refused = await admin_client.post("/api/v1/rules", headers=headers, json={
            "rule": {"name": "bad", "when": {"sender": [sender]}, "then": "rejct"}})
        assert refused.status == 422, await refused.text()
        assert (await refused.json())["error"]["details"] == [{
            "field": "rule", "message": "rule 'bad': then: expected one of accept, reject, "
            "tempfail, discard, quarantine, strip_attachment; got 'rejct' (did you mean "
            "'reject'?)"}]
    assert await _names(admin_client, admin_key) == []


@pytest.mark.parametrize("method, path, rule", [
    ("post", "/api/v1/rules", 5),
    ("patch", "/api/v1/rules/any", {"when": {}}),
])
async def test_every_bad_field_of_a_rule_change_is_listed_at_once(
    admin_client: TestClient[Any, Any], admin_key: str, method: str, path: str, rule: Any
) -> None:
    # The comment, the rule and the position were checked one after another: each fix
    # revealed the next problem.
    response = await getattr(admin_client, method)(path, headers=bearer(admin_key), json={
        "rule": rule, "comment": 7, "position": -1, "bogus": 1})
    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert sorted(detail["field"] for detail in details) == [
        "bogus", "comment", "position", "rule"]


async def test_edits_after_a_rollback_build_on_the_active_revision(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    before = await _names(admin_client, admin_key)
    for rule in (block("undo-keep", "a@evil.test"), block("undo-mistake", "ceo@example.com")):
        response = await admin_client.post("/api/v1/rules", headers=headers, json={"rule": rule})
        assert response.status == 201
    response = await admin_client.post("/api/v1/policies/database-rules/rollback",
                                       headers=headers)
    assert response.status == 200
    rolled_back_to = (await response.json())["id"]
    body = await (await admin_client.get("/api/v1/rules", headers=headers)).json()
    assert body["revision_id"] == rolled_back_to
    assert [rule["name"] for rule in body["rules"]] == [*before, "undo-keep"]

    response = await admin_client.post("/api/v1/rules", headers=headers,
                                       json={"rule": block("undo-other", "x@evil.test")})
    assert response.status == 201
    assert [rule["name"] for rule in (await response.json())["rules"]] == [
        *before, "undo-keep", "undo-other"]
    conn = await connect(database_url)
    try:
        sources = dict(await fetch_active_sources(conn))
    finally:
        await conn.close()
    [active] = [source for label, source in sources.items()
                if label.startswith("database-rules@")]
    assert "x@evil.test" in active and "ceo@example.com" not in active


# Each value means one thing to YAML 1.1 (yaml.safe_load) and another to the policy loader
# (YAML 1.2): 040 is 32 or 40, off false or text, 1:30 ninety or text. The route must
# list what the engine runs and keep it through every rewrite of the source. The source
# is one an older writer stored (seeded: the policies routes refuse this name now).
LEGACY_SOURCE = """version: 1
name: database-rules
rules:
  - name: legacy
    when: {size_over: 040, subject: off}
    then: reject
    message: 1:30
"""
LEGACY = {"name": "legacy", "when": {"size_over": 40, "subject": "off"}, "then": "reject",
          "message": "1:30"}
# Text in JSON that a YAML writer following YAML 1.1 would leave unquoted, and YAML 1.2
# then reads as a number (1e3, 0o17); y is a boolean to some YAML 1.1 readers.
ADDED = {"name": "added", "when": {"subject": "1e3", "header": {"X-Id": "0o17"}},
         "then": {"subject_prefix": "y"}}


async def test_values_yaml_1_1_reads_otherwise_survive_add_update_and_list(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    headers = bearer(admin_key)
    await seed_managed(database_url, LEGACY_SOURCE)
    listed = await (await admin_client.get("/api/v1/rules", headers=headers)).json()
    assert listed["rules"] == [LEGACY]

    response = await admin_client.post("/api/v1/rules", headers=headers, json={"rule": ADDED})
    assert response.status == 201, await response.text()
    assert (await response.json())["rules"] == [LEGACY, ADDED]
    response = await admin_client.patch("/api/v1/rules/legacy", headers=headers,
                                        json={"position": 1})
    assert response.status == 200, await response.text()
    assert (await response.json())["rules"] == [ADDED, LEGACY]
    listed = await (await admin_client.get("/api/v1/rules", headers=headers)).json()
    assert listed["rules"] == [ADDED, LEGACY]

    conn = await connect(database_url)
    try:
        sources = await fetch_active_sources(conn)
    finally:
        await conn.close()
    rules = {rule.name: rule for rule in load_policy_set_from_sources(sources).enforced_rules}
    assert rules["legacy"].reply is not None and rules["legacy"].reply.text == "1:30"
    assert rules["added"].then.subject_prefix == "y"
    policy_set = load_policy_set_from_sources(sources)
    matched = [evaluate_message(policy_set, b"Subject: off\r\n\r\n" + b"x" * (size - 16),
                                Envelope(recipients=("a@example.com",))).rules
               for size in (36, 41)]  # 36 is over 32, not over 40
    assert matched == [(), ("legacy",)]


async def test_a_blank_comment_is_as_none(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """Blanks were stored as the revision's comment; no comment gives the change's name."""
    response = await admin_client.post("/api/v1/rules", headers=bearer(admin_key), json={
        "rule": block("blank", "blank@evil.test"), "comment": "  "})
    assert response.status == 201, await response.text()
    assert (await response.json())["revision"]["comment"] == "rule.created"
