"""A deploy, a deactivation and a settings change sent with If-Match naming what was read
are refused 412 once another change made it stale, as a Rules API change, a rollback and
an activation are: they went through regardless, and undid the other change unseen."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url  # the active policies of this test alone


async def _upload(client: Client, headers: dict[str, str], name: str, priority: int = 50
                  ) -> int:
    source = f"version: 1\nname: {name}\npriority: {priority}\nrules: []\n"
    uploaded = await client.post("/api/v1/policies", data=source, headers={**headers, **YAML})
    assert uploaded.status == 201, await uploaded.text()
    revision: int = (await uploaded.json())["id"]
    return revision


async def _active(client: Client, headers: dict[str, str]) -> dict[str, int | None]:
    listed = await (await client.get("/api/v1/policies", headers=headers)).json()
    return {p["policy_name"]: p["active_revision"] for p in listed["policies"]}


async def _refused(response: Any) -> None:
    assert response.status == 412, await response.text()
    assert (await response.json())["error"]["code"] == "precondition_failed"


async def test_a_deploy_on_a_stale_active_set_is_refused(admin_client: Client,
                                                         admin_key: str) -> None:
    headers = bearer(admin_key)
    first = await _upload(admin_client, headers, "one")
    second = await _upload(admin_client, headers, "two")
    seen = (await admin_client.get("/api/v1/policies", headers=headers)).headers["ETag"]
    other = await admin_client.post("/api/v1/policies/deploy", headers=headers,
                                    json={"activate": [first]})  # another operator
    assert other.status == 200, await other.text()
    stale = await admin_client.post("/api/v1/policies/deploy", json={"activate": [second]},
                                    headers={**headers, "If-Match": seen})
    await _refused(stale)
    assert await _active(admin_client, headers) == {"one": first, "two": None}
    fresh = await admin_client.post("/api/v1/policies/deploy", json={"activate": [second]},
                                    headers={**headers, "If-Match": other.headers["ETag"]})
    assert fresh.status == 200, await fresh.text()
    listed = await admin_client.get("/api/v1/policies", headers=headers)
    assert listed.headers["ETag"] == fresh.headers["ETag"] != other.headers["ETag"]


async def test_a_deactivation_of_a_revision_no_longer_active_is_refused(
    admin_client: Client, admin_key: str
) -> None:
    headers = bearer(admin_key)
    first = await _upload(admin_client, headers, "three")
    second = await _upload(admin_client, headers, "three", priority=60)
    for revision in (first, second):
        activated = await admin_client.post(f"/api/v1/revisions/{revision}/activate",
                                            headers=headers)
        assert activated.status == 200
    stale = await admin_client.post("/api/v1/policies/three/deactivate",
                                    headers={**headers, "If-Match": f'"{first}"'})
    await _refused(stale)
    assert (await _active(admin_client, headers))["three"] == second
    fresh = await admin_client.post("/api/v1/policies/three/deactivate",
                                    headers={**headers, "If-Match": f'"{second}"'})
    assert fresh.status == 200, await fresh.text()
    assert (await _active(admin_client, headers))["three"] is None


async def test_a_settings_change_on_stale_settings_is_refused(admin_client: Client,
                                                              admin_key: str) -> None:
    headers = bearer(admin_key)
    seen = (await admin_client.get("/api/v1/settings", headers=headers)).headers["ETag"]
    other = await admin_client.put("/api/v1/settings", headers=headers,
                                   json={"outbound_max_recipients": 7})  # another operator
    assert other.status == 200, await other.text()
    stale = await admin_client.put("/api/v1/settings", json={"outbound_max_recipients": 9},
                                   headers={**headers, "If-Match": seen})
    await _refused(stale)
    shown = await admin_client.get("/api/v1/settings", headers=headers)
    assert (await shown.json())["outbound_max_recipients"] == 7
    assert shown.headers["ETag"] == other.headers["ETag"] != seen
    fresh = await admin_client.put("/api/v1/settings", json={"outbound_max_recipients": None},
                                   headers={**headers, "If-Match": other.headers["ETag"]})
    assert fresh.status == 200, await fresh.text()
    assert fresh.headers["ETag"] == seen  # the defaults again: no row stored, as at first


async def test_one_resources_tag_is_refused_by_the_other(admin_client: Client,
                                                         admin_key: str) -> None:
    """No setting stored and no policy active: both states are empty, and their tags
    were one, so the policies' tag passed a settings change's If-Match (and back)."""
    headers = bearer(admin_key)
    policies = (await admin_client.get("/api/v1/policies", headers=headers)).headers["ETag"]
    settings = (await admin_client.get("/api/v1/settings", headers=headers)).headers["ETag"]
    assert policies != settings
    put = await admin_client.put("/api/v1/settings", json={"outbound_max_recipients": 9},
                                 headers={**headers, "If-Match": policies})
    await _refused(put)
    revision = await _upload(admin_client, headers, "four")
    deploy = await admin_client.post("/api/v1/policies/deploy", json={"activate": [revision]},
                                     headers={**headers, "If-Match": settings})
    await _refused(deploy)
    assert await _active(admin_client, headers) == {"four": None}
