"""An If-Match that holds no entity tag is a malformed request (400), not a change made
since (412): nothing changed, and the client is told to quote the ETag."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url  # the rules of this test alone


RULE = {"rule": {"name": "spam", "when": {"sender": ["a@evil.test"]}, "then": "reject"}}


async def _current_tag(client: TestClient[Any, Any], key: str) -> str:
    created = await client.post("/api/v1/rules", headers=bearer(key), json=RULE)
    assert created.status == 201, await created.text()
    return created.headers["ETag"]


@pytest.mark.parametrize("spelt", [
    lambda tag: tag.strip('"'),  # the revision id, unquoted: what curl users write
    lambda tag: f"'{tag.strip(chr(34))}'",  # single quotes
    lambda tag: "",
    lambda tag: " , ",
], ids=["unquoted", "single-quoted", "empty", "empty-list"])
async def test_an_if_match_of_no_entity_tag_is_a_bad_request(
    admin_client: TestClient[Any, Any], admin_key: str, spelt: Any
) -> None:
    tag = await _current_tag(admin_client, admin_key)
    response = await admin_client.patch("/api/v1/rules/spam", json={"position": 0},
                                        headers={**bearer(admin_key), "If-Match": spelt(tag)})
    # It was 412 "another change made another revision active since", of the current tag.
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "bad_request"
    assert [d["field"] for d in error["details"]] == ["If-Match"]


@pytest.mark.parametrize("spelt", [
    lambda tag: tag, lambda tag: f" {tag} ,", lambda tag: f'W/"0", {tag}', lambda tag: "*",
], ids=["as-given", "list-with-empty-element", "with-a-weak-tag", "star"])
async def test_entity_tags_in_any_list_form_match(
    admin_client: TestClient[Any, Any], admin_key: str, spelt: Any
) -> None:
    tag = await _current_tag(admin_client, admin_key)
    response = await admin_client.patch("/api/v1/rules/spam", json={"position": 0},
                                        headers={**bearer(admin_key), "If-Match": spelt(tag)})
    assert response.status == 200, await response.text()


async def test_a_weak_tag_alone_never_matches(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    tag = await _current_tag(admin_client, admin_key)
    response = await admin_client.patch("/api/v1/rules/spam", json={"position": 0},
                                        headers={**bearer(admin_key), "If-Match": f"W/{tag}"})
    assert response.status == 412  # If-Match compares strongly (RFC 9110 13.1.1)
