"""An uploaded policy whose terminal rule without conditions comes before other rules
(which no message then reaches) was taken without a word; its answer now warns (code
``unreachable_rule``) at that rule, and the OpenAPI document lists the code."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.engine import LOADER_WARNINGS, TEST_WARNING
from postwarden_policies.errors import (
    TEST_EXPECTATION_UNMET,
    TEST_SAMPLE_MISREAD,
    WARNING_CODES,
)

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


def test_every_warning_code_has_its_meaning_and_can_fail_a_ci_run() -> None:
    """The codes `--error-on` takes (postwarden_policies.errors.WARNING_CODES) and the
    meanings the API documents (engine.LOADER_WARNINGS) are kept apart: one list each.
    They name the same codes, but for the policy test mistakes `check` refuses and an
    upload warns of."""
    refused_by_check = {TEST_SAMPLE_MISREAD, TEST_EXPECTATION_UNMET, TEST_WARNING}
    assert set(LOADER_WARNINGS) == set(WARNING_CODES) | refused_by_check
    assert len(WARNING_CODES) == len(set(WARNING_CODES))
