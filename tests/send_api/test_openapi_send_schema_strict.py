"""The served ``SendEmail`` schema, which a generated client validates against, refuses
what the service refuses of metadata, tags, attachments and header values, and takes
what it takes at their limits."""

from __future__ import annotations

import base64
from typing import Any

import jsonschema
import pytest

from .conftest import Client, body

SEND = "/api/v1/send-email"
FILE = {"filename": "a.txt", "content_type": "text/plain",
        "content": base64.b64encode(b"hello").decode()}

REFUSED = [
    pytest.param({"metadata": {"order": {"id": 1}}}, id="nested-metadata"),
    pytest.param({"metadata": {"ids": [1, 2]}}, id="list-in-metadata"),
    pytest.param({"metadata": {"note": "x" * 3000}}, id="metadata-over-2-KiB"),
    pytest.param({"tags": ["needs review"]}, id="tag-with-a-space"),
    pytest.param({"tags": ["t" * 65]}, id="tag-too-long"),
    pytest.param({"tags": ["a", "a"]}, id="tag-given-twice"),
    pytest.param({"attachments": [{**FILE, "disposition": "inline"}]}, id="attachment-extra-key"),
    pytest.param({"headers": {"X-Note": "v" * 901}}, id="header-value-too-long"),
    pytest.param({"headers": {"references": "<a@example.org> " * 501}},
                 id="references-too-long"),
    pytest.param({"attachments": [{**FILE, "filename": "a" * 252 + ".txt"}]},
                 id="filename-too-long"),
    pytest.param({"attachments": [{**FILE, "filename": ""}]}, id="empty-filename"),
    *(pytest.param({"html": "<img src='cid:logo'>",
                    "attachments": [{**FILE, "content_id": c}]}, id=f"content-id-{name}")
      for name, c in [("angle-brackets", "<logo>"), ("cid-url", "cid:logo"), ("space", "a b"),
                      ("too-long", "c" * 256), ("empty", "")]),
]
AT_THE_LIMITS = body(
    metadata={"note": "x" * 1000, "count": 3, "ok": True, "none": None},
    tags=["t" * 64, "a.b:c_d-e"],
    headers={"X-Note": "v" * 900, "REFERENCES": "<a@example.org> " * 499 + "<ab@example.org>"},
    attachments=[FILE, {**FILE, "filename": "a" * 251 + ".txt"},
                 {**FILE, "content_id": "c" * 243 + "@example.com"}],
    html="<img src='cid:" + "c" * 243 + "@example.com'>",
)


async def _send_email_schema(client: Client) -> dict[str, Any]:
    document = await (await client.get("/api/v1/openapi.json")).json()
    return {"$ref": "#/components/schemas/SendEmail", "components": document["components"]}


@pytest.mark.parametrize("extra", REFUSED)
async def test_the_schema_refuses_what_the_service_refuses(
    client: Client, sender: dict[str, str], extra: dict[str, Any]
) -> None:
    request = body(**extra)
    response = await client.post(SEND, json=request, headers=sender)
    assert response.status == 422, await response.text()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(request, await _send_email_schema(client))


async def test_the_schema_takes_what_the_service_takes_at_the_limits(
    client: Client, sender: dict[str, str]
) -> None:
    jsonschema.validate(AT_THE_LIMITS, await _send_email_schema(client))
    response = await client.post(SEND, json=AT_THE_LIMITS, headers=sender)
    assert response.status == 202, await response.text()
