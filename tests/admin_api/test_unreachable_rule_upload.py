"""An uploaded policy whose terminal rule without conditions comes before other rules
(which no message then reaches) was taken without a word; its answer now warns (code
``unreachable_rule``) at that rule, and the OpenAPI document lists the code."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from .test_policies import upload

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]
SHADOWING = ("version: 1\nname: shadowing\nrules:\n  - name: allow-all\n    then: accept\n"
             "  - name: block-executables\n    when: {attachment: {filename: ['*.exe']}}\n"
             "    then: reject\n")


async def test_a_catch_all_before_other_rules_is_an_upload_warning(
    admin_client: Client, admin_key: str
) -> None:
    status, answer = await upload(admin_client, admin_key, SHADOWING)
    assert status == 201, answer
    assert [(w["code"], w["file"], w["line"], w["column"]) for w in answer["warnings"]] == [
        ("unreachable_rule", "upload", 4, 11)]
    assert "block-executables" in answer["warnings"][0]["message"]
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    codes = document["components"]["schemas"]["PolicyWarning"]["properties"]["code"]["enum"]
    assert "unreachable_rule" in codes
