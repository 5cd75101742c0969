"""docs/api.md's error codes for a method a route does not take (405
``method_not_allowed``) and for a state that does not allow the request (409
``no_previous_revision``, ``no_active_policy``). The rules' codes are in
test_rule_conflicts.py, the webhooks' in tests/webhooks/test_replay_pending.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"
YAML = {"Content-Type": "application/yaml"}
POLICY = ("version: 1\nname: lonely\npriority: 50\nrules:\n  - name: lonely-block\n"
          "    when:\n      sender: [bad@evil.test]\n    then: reject\n")


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: no_active_policy needs one where nothing is active."""
    return fresh_database_url


async def error_code(response: ClientResponse) -> str:
    """The code of an error answer, after checking the documented shape."""
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    code: str = body["error"]["code"]
    return code


async def upload_and_activate(client: TestClient[Any, Any], key: str, source: str) -> int:
    """Upload a policy and activate it, as an admin does; the revision's id."""
    uploaded = await client.post("/api/v1/policies", data=source.encode(),
                                 headers={**bearer(key), **YAML})
    assert uploaded.status == 201, await uploaded.text()
    revision: int = (await uploaded.json())["id"]
    activated = await client.post(f"/api/v1/revisions/{revision}/activate", headers=bearer(key))
    assert activated.status == 200, await activated.text()
    return revision


@pytest.mark.parametrize(("method", "path", "allowed"), [
    pytest.param("DELETE", "/api/v1/audit", {"GET", "HEAD"}, id="keyed-route"),
    pytest.param("PUT", "/api/v1/keys", {"GET", "HEAD", "POST"}, id="two-methods"),
])
async def test_a_method_the_route_does_not_take_is_405_with_allow(
    admin_client: TestClient[Any, Any], admin_key: str, method: str, path: str,
    allowed: set[str],
) -> None:
    response = await admin_client.request(method, path, headers=bearer(admin_key))
    assert response.status == 405
    assert await error_code(response) == "method_not_allowed"
    assert set(response.headers["Allow"].split(",")) == allowed


async def test_a_wrong_method_on_a_public_path_is_405_without_a_key(
    admin_client: TestClient[Any, Any],
) -> None:
    """/healthz needs no key, whatever the method: no 401, no failed login counted."""
    response = await admin_client.delete("/healthz")
    assert response.status == 405
    assert await error_code(response) == "method_not_allowed"
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_rollback_with_a_single_revision_is_no_previous_revision(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    revision = await upload_and_activate(admin_client, admin_key, POLICY)

    response = await admin_client.post("/api/v1/policies/lonely/rollback",
                                       headers=bearer(admin_key))
    assert response.status == 409
    assert await error_code(response) == "no_previous_revision"
    listed = await (await admin_client.get(
        "/api/v1/policies/lonely/revisions", headers=bearer(admin_key))).json()
    assert [(r["id"], r["active"]) for r in listed["revisions"]] == [(revision, True)]


async def test_rollback_says_why_there_is_nothing_to_roll_back_to(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # Both were 409 "no earlier revision to roll back to": for a policy never uploaded
    # (a misspelt name), and for one deactivated that has earlier revisions.
    response = await admin_client.post("/api/v1/policies/lonley/rollback",
                                       headers=bearer(admin_key))
    assert response.status == 404
    assert await error_code(response) == "not_found"
    await upload_and_activate(admin_client, admin_key, POLICY)
    await upload_and_activate(admin_client, admin_key, POLICY.replace("bad@", "worse@"))
    deactivated = await admin_client.post("/api/v1/policies/lonely/deactivate",
                                          headers=bearer(admin_key))
    assert deactivated.status == 200, await deactivated.text()
    response = await admin_client.post("/api/v1/policies/lonely/rollback",
                                       headers=bearer(admin_key))
    assert response.status == 409
    assert await error_code(response) == "no_active_policy"


async def test_policy_test_against_nothing_active_is_no_active_policy(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    form = aiohttp.FormData()
    form.add_field("message", (EXAMPLES / "samples" / "exe-attachment.eml").read_bytes(),
                   filename="m.eml", content_type="message/rfc822")
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 409
    assert await error_code(response) == "no_active_policy"
