"""A policy test's mistake the milter only warns of (expect_rules naming a rule the
policy does not define, a misspelt limit, a misplaced ``report:``) was only logged by
the service: the admin who uploaded or activated the policy was told nothing. The
upload's and the activation's answers now carry it as a warning at its line and column,
code ``test_expect_rules_invalid``."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

from .test_policies import upload

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]
MISTAKEN = ("version: 1\nname: mistaken\nrules:\n  - name: block\n    when:\n"
            "      sender: [bad@evil.test]\n    then: reject\n"
            "tests:\n  - name: t\n    raw: \"Subject: x\\n\\nhi\\n\"\n    sender: bad@evil.test\n"
            "    recipients: [a@b.test]\n    expect: reject\n"
            "    expect_rules: [blocks, limit:max_recipient, report:block]\n")
PROBLEMS = [
    "test 't': unknown rule 'blocks' in expect_rules",
    "test 't': unknown limit 'max_recipient' in 'limit:max_recipient'",
    "test 't': 'report:block' in expect_rules: verdicts of this enforce-mode policy name "
    "the rule 'block'",
]


def _told(warnings: list[dict[str, Any]]) -> list[tuple[str, str, int, int, str]]:
    return [(w["code"], w["file"], w["line"], w["column"], w["message"]) for w in warnings]


async def test_a_tests_mistake_is_in_the_upload_and_activation_warnings(
    admin_client: Client, admin_key: str
) -> None:
    status, revision = await upload(admin_client, admin_key, MISTAKEN)
    assert status == 201, revision
    told = _told(revision["warnings"])
    assert [(code, file, line, column) for code, file, line, column, _ in told] == [
        ("test_expect_rules_invalid", "upload", 14, column) for column in (20, 28, 49)]
    for (*_, message), problem in zip(told, PROBLEMS, strict=True):
        assert message.startswith(problem), message

    label = f"mistaken@r{revision['id']}"
    activated = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                        headers=bearer(admin_key))
    assert activated.status == 200
    assert [(file, message) for _, file, _, _, message in
            _told((await activated.json())["warnings"])] == [
        (label, message) for *_, message in told]


async def test_the_openapi_document_declares_the_code(admin_client: Client) -> None:
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    warning = document["components"]["schemas"]["PolicyWarning"]
    assert "test_expect_rules_invalid" in warning["properties"]["code"]["enum"]
    assert {"file", "line", "column"} <= set(warning["properties"])


async def test_a_value_a_comment_cut_short_is_an_upload_warning_of_its_own_code(
    admin_client: Client, admin_key: str
) -> None:
    # Not told as a policy test's mistake: it is the reply's text that lost "#12".
    source = ("version: 1\nname: cut\nrules:\n  - name: r\n    then: reject\n"
              "    message: Ticket #12\n")
    status, revision = await upload(admin_client, admin_key, source)
    assert status == 201, revision
    [(code, file, line, column, message)] = _told(revision["warnings"])
    assert (code, file, line, column) == ("value_cut_by_comment", "upload", 6, 14)
    assert message.startswith("rule 'r': message: 'Ticket' ends where '#12' starts a YAML "
                              "comment")
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    codes = document["components"]["schemas"]["PolicyWarning"]["properties"]["code"]["enum"]
    assert "value_cut_by_comment" in codes


async def test_a_raw_sample_of_one_line_is_an_upload_warning_as_check_refuses_it(
    admin_client: Client, admin_key: str
) -> None:
    """In single quotes YAML reads no escapes: the case's message was one header line of
    backslashes. `check` and `test` refused it; the upload said nothing."""
    source = ("version: 1\nname: one-line\ntests:\n  - name: t\n"
              "    raw: 'Subject: x\\n\\nhi\\n'\n    recipients: [a@b.test]\n"
              "    expect: accept\n")
    status, revision = await upload(admin_client, admin_key, source)
    assert status == 201, revision
    [(code, file, line, column, message)] = _told(revision["warnings"])
    assert (code, file, line, column) == ("test_sample_misread", "upload", 5, 10)
    assert message.startswith("test 't': raw is one line: its \\n are a backslash and an n")
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    codes = document["components"]["schemas"]["PolicyWarning"]["properties"]["code"]["enum"]
    assert "test_sample_misread" in codes


async def test_an_expectation_no_verdict_can_meet_is_an_upload_warning_as_check_refuses_it(
    admin_client: Client, admin_key: str
) -> None:
    """Headers expected of a message the case expects rejected: `check` and `test`
    refused the case, the upload said nothing."""
    source = MISTAKEN.replace("    expect_rules: [blocks, limit:max_recipient, report:block]\n",
                              "    expect_headers: {X-Seen: 'yes'}\n")
    status, revision = await upload(admin_client, admin_key, source)
    assert status == 201, revision
    [(code, file, line, column, message)] = _told(revision["warnings"])
    assert (code, file, line, column) == ("test_expectation_unmet", "upload", 14, 21)
    assert message.startswith("test 't': expect: reject delivers nothing")
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    codes = document["components"]["schemas"]["PolicyWarning"]["properties"]["code"]["enum"]
    assert "test_expectation_unmet" in codes
