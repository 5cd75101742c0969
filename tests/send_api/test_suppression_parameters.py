"""The suppression list refuses what it does not know, as the message search does: a
misspelt filter would list every suppression, a misspelt body field would be dropped."""

from __future__ import annotations

import uuid
from typing import Any

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client

SUPPRESSIONS = "/api/v1/suppressions"


async def _operator(mint_key: MintKey) -> dict[str, str]:
    return bearer(await mint_key(Role.OPERATOR))


def _problems(error: dict[str, Any]) -> list[str]:
    assert error["code"] == "validation_failed"
    return [detail["field"] for detail in error["details"]]


async def test_an_unknown_filter_is_a_422_naming_it(client: Client, mint_key: MintKey) -> None:
    operator = await _operator(mint_key)
    response = await client.get(f"{SUPPRESSIONS}?reasn=manual&limit=0", headers=operator)
    assert response.status == 422, await response.text()
    assert _problems((await response.json())["error"]) == ["reasn", "limit"]
    listed = await client.get(f"{SUPPRESSIONS}?reason=manual&limit=5&after=a", headers=operator)
    assert listed.status == 200, await listed.text()


async def test_an_unknown_reason_is_told_the_reasons_there_are(
    client: Client, mint_key: MintKey
) -> None:
    # It said "hard_bounce or manual", where every other filter says what it expected.
    response = await client.get(SUPPRESSIONS, params={"reason": "bounce"},
                                headers=await _operator(mint_key))
    assert (await response.json())["error"]["details"] == [
        {"field": "reason", "message": "expected one of hard_bounce, manual"}]


async def test_an_unknown_body_field_is_a_422_and_suppresses_nothing(
    client: Client, mint_key: MintKey
) -> None:
    operator = await _operator(mint_key)
    address = f"typo-{uuid.uuid4().hex[:8]}@example.org"
    response = await client.post(SUPPRESSIONS, headers=operator,
                                 json={"address": address, "detial": "asked by phone"})
    assert response.status == 422, await response.text()
    assert _problems((await response.json())["error"]) == ["detial"]
    both = await client.post(SUPPRESSIONS, headers=operator, json={"adress": address})
    assert _problems((await both.json())["error"]) == ["adress", "address"]
    lifted = await client.delete(SUPPRESSIONS, headers=operator, params={"address": address})
    assert lifted.status == 404  # not suppressed


async def test_a_detail_that_is_no_string_is_told_so(client: Client, mint_key: MintKey) -> None:
    # A number was refused as "at most 500 characters", which it is.
    operator = await _operator(mint_key)
    address = f"detail-{uuid.uuid4().hex[:8]}@example.org"
    response = await client.post(SUPPRESSIONS, headers=operator,
                                 json={"address": address, "detail": 7})
    assert response.status == 422, await response.text()
    details = (await response.json())["error"]["details"]
    assert [(d["field"], d["message"]) for d in details] == [("detail", "expected a string")]


async def test_an_empty_detail_is_no_detail_and_a_repeat_keeps_the_first_entry(
    client: Client, mint_key: MintKey
) -> None:
    """An empty detail was stored, and listed, as "" beside the null of one left out. An
    address suppressed again keeps its entry (why, when and by whom it was suppressed
    first: a hard bounce stays one): the 200, not a 201, says nothing was added."""
    operator = await _operator(mint_key)
    address = f"empty-{uuid.uuid4().hex[:8]}@example.org"
    added = await client.post(SUPPRESSIONS, headers=operator,
                              json={"address": address, "detail": ""})
    assert (added.status, (await added.json())["detail"]) == (201, None)
    again = await client.post(SUPPRESSIONS, headers=operator,
                              json={"address": address, "detail": "asked by phone"})
    assert again.status == 200
    assert await again.json() == await added.json()


async def test_suppressing_and_lifting_are_in_the_admin_audit_log(
    client: Client, mint_key: MintKey
) -> None:
    """An operator who stops mail to an address (or lets it go again) is named, as for
    every other change an operator makes; a repeated suppression changes nothing."""
    operator = await _operator(mint_key)
    address = f"audited-{uuid.uuid4().hex[:8]}@example.org"
    for _ in range(2):
        added = await client.post(SUPPRESSIONS, headers=operator,
                                  json={"address": address, "detail": "asked by phone"})
        assert added.status in (200, 201), await added.text()
    lifted = await client.delete(SUPPRESSIONS, headers=operator, params={"address": address})
    assert lifted.status == 200, await lifted.text()
    auditor = bearer(await mint_key(Role.AUDITOR))
    entries = []
    for action in ("suppression.added", "suppression.lifted"):
        page = await client.get("/api/v1/admin-audit", headers=auditor,
                                params={"action": action})
        assert page.status == 200, await page.text()
        entries += [e for e in (await page.json())["entries"] if e["target"] == address]
    assert [(e["action"], e["summary"]) for e in entries] == [
        ("suppression.added", {"detail": "asked by phone"}), ("suppression.lifted", {})]
