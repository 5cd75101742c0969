"""The send API's routes declare every error status they answer with, each with its
codes as an ``enum`` (what code generators build their error types from), and the
``Idempotency-Key`` header as the service takes it.

The declared codes are checked against the source (the send API's refusals, and every
code an error is raised with: ``test_error_codes_documented.source_pairs``) and against
the service's answers to requests it refuses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.send.idempotency import valid_key
from postwarden_admin_api.send.refusals import Refusal
from tests.admin_api.test_error_codes_documented import source_pairs
from tests.fixtures.adminapp import AiohttpClient, bearer, settings_for

pytestmark = pytest.mark.postgres

SEND, MESSAGES, SUPPRESSIONS = "/api/v1/send-email", "/api/v1/messages", "/api/v1/suppressions"
SEND_ROUTES = {
    ("post", SEND), ("get", MESSAGES), ("get", f"{MESSAGES}/{{id}}"),
    ("get", SUPPRESSIONS), ("post", SUPPRESSIONS), ("delete", SUPPRESSIONS),
}
SMALL_BODY_LIMIT = 1024  # max_request_body_bytes of the app the refusals are asked of


def _codes(answer: dict[str, Any]) -> list[str] | None:
    """The error codes a declared response lists, None if it lists none."""
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    code = schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
    return code.get("enum")


async def _document(client: TestClient[Any, Any]) -> dict[str, Any]:
    document: dict[str, Any] = await (await client.get("/api/v1/openapi.json")).json()
    return document


async def test_send_email_declares_every_refusal_under_its_status(
    admin_client: TestClient[Any, Any]
) -> None:
    responses = (await _document(admin_client))["paths"][SEND]["post"]["responses"]
    missing = [(refusal.status, refusal.code) for refusal in Refusal
               if refusal.code not in (_codes(responses.get(str(refusal.status), {})) or [])]
    assert missing == []


async def test_every_error_status_of_the_send_routes_lists_its_codes(
    admin_client: TestClient[Any, Any]
) -> None:
    paths = (await _document(admin_client))["paths"]
    for method, path in SEND_ROUTES:
        for status, answer in paths[path][method]["responses"].items():
            if status != "default" and int(status) >= 400:
                assert _codes(answer), (method, path, status)


async def test_every_declared_code_is_one_the_service_raises_with_its_status(
    admin_client: TestClient[Any, Any]
) -> None:
    declared = {
        (int(status), code)
        for methods in (await _document(admin_client))["paths"].values()
        for spec in methods.values()
        for status, answer in spec["responses"].items()
        for code in _codes(answer) or []
    }
    raised, _ = source_pairs()
    assert declared  # the document lists codes at all
    assert sorted(declared - raised) == []


def _documented_key_ok(schema: dict[str, Any], key: str) -> bool:
    # JSON Schema's patterns are ECMA-262's, whose $ (unlike Python's) takes no "\n" before it.
    pattern = re.sub(r"\$$", r"\\Z", schema["pattern"])
    return (schema["minLength"] <= len(key) <= schema["maxLength"]
            and re.search(pattern, key) is not None)


async def test_the_idempotency_key_schema_takes_what_the_service_takes(
    admin_client: TestClient[Any, Any]
) -> None:
    parameters = (await _document(admin_client))["paths"][SEND]["post"]["parameters"]
    [schema] = [p["schema"] for p in parameters if p["name"] == "Idempotency-Key"]
    samples = [chr(point) for point in range(0x250)]
    samples += ["", "k" * 255, "k" * 256, "order-1 ", "order\t1", "order-1\n", "order-1~!"]
    differ = [key for key in samples if _documented_key_ok(schema, key) != valid_key(key)]
    assert differ == []


@dataclass(frozen=True)
class Refused:
    """A request the service refuses, and the status it answers with."""

    method: str
    url: str
    role: Role | None  # whose key is sent, None: none
    headers: dict[str, str]
    body: bytes | None
    status: int


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
SENDER, OPERATOR = Role.SENDER, Role.OPERATOR
CASES = [
    pytest.param(Refused("post", SEND, None, {}, b"{}", 401), id="send-no-key"),
    pytest.param(Refused("post", SEND, Role.AUDITOR, {}, b"{}", 403), id="send-wrong-role"),
    pytest.param(Refused("post", SEND, SENDER, {"Content-Type": "text/plain"}, b"{}", 415),
                 id="send-not-json"),
    pytest.param(Refused("post", SEND, SENDER, {}, b"{", 400), id="send-bad-json"),
    # No sender is allowed (allowed_sender_addresses): the most serious field problem.
    pytest.param(Refused("post", SEND, SENDER, {}, b'{"from": "app@example.com"}', 403),
                 id="send-sender-not-allowed"),
    pytest.param(Refused("post", SEND, SENDER, {}, b"{}" + b" " * SMALL_BODY_LIMIT, 413),
                 id="send-body-over-limit"),
    pytest.param(Refused("get", f"{MESSAGES}?status=queued&status=sent", SENDER, {}, None, 422),
                 id="messages-parameter-twice"),
    pytest.param(Refused("get", f"{MESSAGES}?tag=%00", SENDER, {}, None, 400),
                 id="messages-nul"),
    pytest.param(Refused("get", MESSAGES, SENDER, {"Expect": "200-ok"}, None, 417),
                 id="messages-expectation"),
    pytest.param(Refused("get", f"{MESSAGES}/{UNKNOWN_ID}", SENDER, {}, None, 404),
                 id="message-unknown"),
    pytest.param(Refused("get", f"{SUPPRESSIONS}?limit=0", OPERATOR, {}, None, 422),
                 id="suppressions-bad-limit"),
    pytest.param(Refused("post", SUPPRESSIONS, OPERATOR, {}, b'{"address": 1}', 422),
                 id="suppress-bad-address"),
    pytest.param(Refused("delete", f"{SUPPRESSIONS}?address=nobody@example.org", OPERATOR, {},
                         None, 404), id="unsuppress-unknown"),
]


def _operation(document: dict[str, Any], method: str, url: str) -> dict[str, Any]:
    path = url.partition("?")[0]
    if path.startswith(f"{MESSAGES}/"):
        path = f"{MESSAGES}/{{id}}"
    operation: dict[str, Any] = document["paths"][path][method]
    return operation


@pytest.mark.parametrize("case", CASES)
async def test_a_refusal_is_answered_as_declared(
    aiohttp_client: AiohttpClient, database_url: str, role_keys: dict[Role, str],
    case: Refused,
) -> None:
    """Declared under its own status (not only ``default``), with a listed code and
    every header the declaration requires."""
    client = await aiohttp_client(create_app(settings_for(
        database_url, max_request_body_bytes=SMALL_BODY_LIMIT)))
    document = await _document(client)
    key = bearer(role_keys[case.role]) if case.role else {}
    sent = {"Content-Type": "application/json", **key, **case.headers}
    response = await client.request(case.method.upper(), case.url, data=case.body,
                                    headers=sent)
    assert response.status == case.status, await response.text()
    declared = _operation(document, case.method, case.url)["responses"][str(case.status)]
    assert (await response.json())["error"]["code"] in (_codes(declared) or [])
    required = {name for name, spec in declared["headers"].items() if spec["required"]}
    assert sorted(name for name in required if name not in response.headers) == []
