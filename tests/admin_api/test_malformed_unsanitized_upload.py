"""An uploaded policy that sanitizes HTML without holding malformed mail (which is never
sanitized) was taken without a word; its answer now warns (code
``malformed_unsanitized``) at the `html: true`. An activation is checked with the
policies active beside it: a rule in one of them holding malformed mail answers it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

from .test_policies import upload

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]
SANITIZING = "version: 1\nname: sanitizing\nsanitize:\n  html: true\n"
HOLDING = ("version: 1\nname: holding\nrules:\n  - name: hold-broken-mime\n"
           "    when: {flag: [malformed]}\n    then: quarantine\n")


async def _activate(client: Client, key: str, revision: dict[str, Any]) -> list[Any]:
    activated = await client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                  headers=bearer(key))
    assert activated.status == 200
    warnings: list[Any] = (await activated.json())["warnings"]
    return warnings


async def test_sanitizing_without_holding_malformed_mail_is_an_upload_warning(
    admin_client: Client, admin_key: str
) -> None:
    status, sanitizing = await upload(admin_client, admin_key, SANITIZING)
    assert status == 201, sanitizing
    assert [(w["code"], w["file"], w["line"], w["column"]) for w in sanitizing["warnings"]] == [
        ("malformed_unsanitized", "upload", 4, 9)]
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    codes = document["components"]["schemas"]["PolicyWarning"]["properties"]["code"]["enum"]
    assert "malformed_unsanitized" in codes

    status, holding = await upload(admin_client, admin_key, HOLDING)
    assert status == 201, holding
    assert await _activate(admin_client, admin_key, holding) == []
    assert await _activate(admin_client, admin_key, sanitizing) == []
