"""A body in a Content-Encoding the service does not decode is refused as such (415,
with ``Accept-Encoding``), not read as if it were not encoded: gzip sent as ``x-gzip``
(the old name RFC 9110 keeps) was a 400 "request body is not UTF-8", and a label the
service does not know (``compress``) was ignored, the body taken as it came."""

from __future__ import annotations

import gzip
import json

import pytest

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, body

SEND = "/api/v1/send-email"


@pytest.mark.parametrize(("encoding", "compressed"), [
    pytest.param("x-gzip", True, id="x-gzip"),
    pytest.param("gzip, identity", True, id="list"),
    pytest.param("compress", False, id="compress-as-plain"),
])
async def test_a_body_in_an_encoding_not_decoded_is_refused_unread(
    client: Client, sender: dict[str, str], encoding: str, compressed: bool
) -> None:
    raw = json.dumps(body()).encode()
    response = await client.post(
        SEND, data=gzip.compress(raw) if compressed else raw,
        headers={**sender, "Content-Type": "application/json", "Content-Encoding": encoding})
    assert response.status == 415, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "unsupported_media_type"
    assert repr(encoding) in error["message"]
    assert response.headers["Accept-Encoding"] == "gzip, deflate"
    listed = await client.get("/api/v1/messages", headers=sender)
    assert (await listed.json())["messages"] == []  # nothing was queued


async def test_gzip_and_identity_are_still_read(client: Client, sender: dict[str, str]) -> None:
    raw = json.dumps(body()).encode()
    for encoding, data in (("gzip", gzip.compress(raw)), ("identity", raw)):
        response = await client.post(
            SEND, data=data,
            headers={**sender, "Content-Type": "application/json",
                     "Content-Encoding": encoding})
        assert response.status == 202, (encoding, await response.text())


async def test_the_suppression_list_refuses_it_too(client: Client, mint_key: MintKey) -> None:
    operator = bearer(await mint_key(Role.OPERATOR))
    response = await client.post(
        "/api/v1/suppressions", data=gzip.compress(b'{"address": "a@example.org"}'),
        headers={**operator, "Content-Type": "application/json",
                 "Content-Encoding": "x-gzip"})
    assert response.status == 415, await response.text()


async def test_the_openapi_document_declares_the_header(client: Client) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    for path, method in (("/api/v1/send-email", "post"), ("/api/v1/suppressions", "post")):
        headers = document["paths"][path][method]["responses"]["415"]["headers"]
        assert headers["Accept-Encoding"]["schema"] == {"const": "gzip, deflate"}
