"""A change takes its values in the body: a query parameter given to one (a body field
sent in the URL, rotate?grace_seconds=0, send-email?idempotency_key=) is refused, not
dropped while the change is made without it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

CHANGES = [
    ("POST", "/api/v1/keys", "name=x"),
    ("DELETE", "/api/v1/keys/{key_id}", "reason=leaked"),
    ("PUT", "/api/v1/settings", "outbound_enabled=false"),
    ("POST", "/api/v1/rules", "position=0"),
    ("PATCH", "/api/v1/rules/r1", "position=0"),
    ("DELETE", "/api/v1/rules/r1", "comment=why"),
    ("POST", "/api/v1/revisions/1/activate", "comment=why"),
    ("POST", "/api/v1/policies/deploy", "activate=1"),
    ("POST", "/api/v1/policies/p/deactivate", "comment=why"),
    ("POST", "/api/v1/policies/p/rollback", "revision_id=1"),
    ("POST", "/api/v1/policies/test", "revision_id=1"),
    # The send API's and the notifications' too: every change but those marked
    # reads_query (an upload's ?comment=, a suppression's removal ?address=).
    ("POST", "/api/v1/send-email", "idempotency_key=k1"),
    ("POST", "/api/v1/suppressions", "address=a@example.org"),
    ("POST", "/api/v1/webhooks", "url=https://hooks.example/in"),
    ("PATCH", "/api/v1/webhooks/1", "enabled=false"),
    ("DELETE", "/api/v1/webhooks/1", "force=1"),
    ("POST", "/api/v1/webhooks/1/deliveries/1/replay", "now=1"),
]


@pytest.mark.parametrize(("method", "path", "query"), CHANGES)
async def test_a_query_parameter_of_a_change_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey,
    *, method: str, path: str, query: str,
) -> None:
    path = path.format(key_id=(await mint_key(Role.AUDITOR)).split("_")[1])
    response = await admin_client.request(method, f"{path}?{query}",
                                          headers=bearer(admin_key))
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == [query.partition("=")[0]]


async def test_a_rotation_given_its_grace_in_the_url_leaves_the_key_as_it_was(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey,
) -> None:
    # Dropped, the grace was the default day: a leaked key rotated "at once" kept working.
    key_id = (await mint_key(Role.SENDER)).split("_")[1]
    response = await admin_client.post(f"/api/v1/keys/{key_id}/rotate?grace_seconds=0",
                                       headers=bearer(admin_key))
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["details"] == [
        {"field": "grace_seconds", "message": "unknown parameter; a change takes its values "
                                              "in the body"}]
    listed = await (await admin_client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    [key] = [k for k in listed["keys"] if k["key_id"] == key_id]
    assert key["rotated_to"] is None and key["expires_at"] is None
