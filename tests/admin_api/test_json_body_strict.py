"""A JSON body is read one way only: UTF-8 (RFC 8259), each key of an object once.

Python's json keeps the last of two equal keys, where a gateway or WAF in front may
read the first (``{"to": ["a@x"], "to": ["evil@x"]}`` would be sent to evil@x), and
reads UTF-16 and UTF-32 too, past the checks made on the raw bytes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]

# Every route that reads a JSON body (bodies.read_json_object).
JSON_ROUTES = [
    pytest.param("post", "/api/v1/send-email", id="send-email"),
    pytest.param("post", "/api/v1/suppressions", id="suppressions"),
    pytest.param("post", "/api/v1/keys", id="keys-create"),
    pytest.param("post", "/api/v1/keys/abc/rotate", id="keys-rotate"),
    pytest.param("put", "/api/v1/settings", id="settings"),
    pytest.param("post", "/api/v1/rules", id="rules-create"),
    pytest.param("patch", "/api/v1/rules/r", id="rules-update"),
    pytest.param("post", "/api/v1/webhooks", id="webhooks-create"),
    pytest.param("patch", "/api/v1/webhooks/1", id="webhooks-update"),
    pytest.param("post", "/api/v1/policies/deploy", id="policies-deploy"),
    pytest.param("post", "/api/v1/policies/p/rollback", id="policies-rollback"),
]
MAIL = ('"from": "App <app@example.com>", "subject": "Hi", "text": "Hello", '
        '"to": ["a@example.org"]')


async def _post(client: Client, key: str, raw: bytes, *,
                content_type: str = "application/json", method: str = "post",
                path: str = "/api/v1/send-email") -> tuple[int, Any]:
    response = await getattr(client, method)(
        path, data=raw, headers={**bearer(key), "Content-Type": content_type})
    return response.status, await response.json()


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
async def test_a_key_given_twice_is_a_400_on_every_json_route(
    admin_client: Client, role_keys: dict[Role, str], method: str, path: str
) -> None:
    status, shown = await _post(admin_client, role_keys[Role.ADMIN],
                                b'{"name": "a", "name": "b"}', method=method, path=path)
    assert status == 400, shown
    assert shown["error"] == {"code": "invalid_json", "details": [],
                              "message": "request body has a duplicate key 'name'"}


@pytest.mark.parametrize("raw", [
    pytest.param(f'{{{MAIL}, "to": ["evil@example.net"]}}', id="top-level"),
    pytest.param(f'{{"to": ["evil@example.net"], {MAIL}}}', id="first-of-two"),
    pytest.param(f'{{{MAIL}, "t\\u006f": ["evil@example.net"]}}', id="escaped-twin"),
    pytest.param(f'{{{MAIL}, "attachments": [{{"filename": "a.txt", "content_type": '
                 f'"text/plain", "content": "YQ==", "content": "Yg=="}}]}}',
                 id="in-an-attachment"),
    pytest.param(f'{{{MAIL}, "metadata": {{"x": {{"to": 1, "to": 2}}}}}}',
                 id="nested-in-metadata"),
])
async def test_the_send_api_refuses_a_key_given_twice_at_any_depth(
    admin_client: Client, role_keys: dict[Role, str], raw: str
) -> None:
    status, shown = await _post(admin_client, role_keys[Role.ADMIN], raw.encode())
    assert status == 400, shown
    assert shown["error"]["code"] == "invalid_json"
    assert shown["error"]["message"].startswith("request body has a duplicate key '")


async def test_a_long_duplicate_key_is_shown_cut(
    admin_client: Client, role_keys: dict[Role, str]
) -> None:
    key = "k" * 500
    status, shown = await _post(admin_client, role_keys[Role.ADMIN],
                                f'{{"{key}": 1, "{key}": 2}}'.encode())
    assert status == 400
    assert shown["error"]["message"] == f"request body has a duplicate key '{'k' * 80}'"


@pytest.mark.parametrize("content_type", [
    "application/json; charset=iso-8859-1",
    'application/json; charset="ISO-8859-1"',
    "application/json; charset=utf-16",
    "application/merge-patch+json; charset=windows-1252",
])
async def test_a_charset_other_than_utf8_is_a_415(
    admin_client: Client, role_keys: dict[Role, str], content_type: str
) -> None:
    raw = f'{{{MAIL}, "text": "Grüße"}}'.encode("latin-1")  # what such a client sends
    status, shown = await _post(admin_client, role_keys[Role.ADMIN], raw,
                                content_type=content_type)
    assert status == 415, shown
    assert shown["error"] == {
        "code": "unsupported_media_type", "details": [],
        "message": "the body must be UTF-8, as JSON is (RFC 8259): send it with "
                   "charset=utf-8 or no charset"}


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", 'application/json; charset="UTF-8"',
    "application/json;charset=Utf-8", "application/json; charset=utf8",
    "application/json; charset=US-ASCII",
])
async def test_utf8_with_or_without_its_charset_is_read(
    admin_client: Client, role_keys: dict[Role, str], content_type: str
) -> None:
    raw = '{"address": "a@grüße.example", "detail": "Grüße", "unknown": 1}'.encode()
    status, shown = await _post(admin_client, role_keys[Role.ADMIN], raw,
                                content_type=content_type, path="/api/v1/suppressions")
    assert status == 422, shown  # read: only its unknown field is refused
    assert shown["error"]["details"] == [{"field": "unknown", "message": "unknown field"}]


NOT_UTF8 = "request body is not UTF-8"


@pytest.mark.parametrize(("raw", "message"), [
    pytest.param('{"address": "a@example.org"}'.encode("utf-16"), NOT_UTF8, id="utf-16"),
    # Valid UTF-8 (ASCII and NULs), but no JSON then.
    pytest.param('{"address": "a@example.org"}'.encode("utf-32-le"),
                 "request body is not valid JSON", id="utf-32"),
    pytest.param(b'{"address": "a@example.org", "detail": "\xed\xa0\x80"}', NOT_UTF8,
                 id="encoded-surrogate"),
    pytest.param('{"address": "a@example.org", "detail": "Grüße"}'.encode("latin-1"),
                 NOT_UTF8, id="latin-1"),
])
async def test_a_body_that_is_not_utf8_is_a_400(
    admin_client: Client, role_keys: dict[Role, str], raw: bytes, message: str
) -> None:
    status, shown = await _post(admin_client, role_keys[Role.ADMIN], raw,
                                path="/api/v1/suppressions")
    assert status == 400, shown
    assert shown["error"] == {"code": "invalid_json", "details": [], "message": message}


@pytest.mark.parametrize(("method", "path"), [
    pytest.param("post", "/api/v1/policies/p/rollback", id="rollback"),
    pytest.param("put", "/api/v1/settings", id="settings"),
])
async def test_a_body_of_many_unknown_fields_gets_a_short_answer(
    admin_client: Client, role_keys: dict[Role, str], method: str, path: str
) -> None:
    # 100,000 keys, each listed: a 5 MB answer (a million, 51 MB, two seconds of the event
    # loop); the first twenty are named, sorted, a long one cut, and the rest counted.
    names = ["z" * 1000] + [f"k{i:06d}" for i in range(100_000)]
    raw = ("{" + ",".join(f'"{name}": 0' for name in names) + "}").encode()
    response = await getattr(admin_client, method)(  # a stream: raw bytes this large warn
        path, data=io.BytesIO(raw),
        headers={**bearer(role_keys[Role.OPERATOR]), "Content-Type": "application/json"})
    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert [d.get("field") for d in details[:20]] == [
        *(f"k{i:06d}" for i in range(19)), "z" * 80]
    assert details[20:] == [{"message": "99981 more unknown fields", "more": 99_981}]
