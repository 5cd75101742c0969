"""What an application relies on: a retry hint on 409, a 413 code that says what is too
large, an OpenAPI schema that describes every field a message answer has."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from postwarden_admin_api.runtime_settings import RUNTIME
from postwarden_admin_api.send import idempotency
from postwarden_admin_api.send.sending import IDEMPOTENCY_HEADER

from .conftest import Client, SetRuntime, body

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


async def test_a_request_whose_twin_is_running_is_told_when_to_retry(
    client: Client, sender: dict[str, str], pool: asyncpg.Pool
) -> None:
    mail = body()
    key = f"running-{uuid.uuid4().hex}"
    key_id = sender["Authorization"].split("_")[1]
    async with pool.acquire() as conn:  # the twin holds the claim, as while it runs
        claimed = await idempotency.claim(conn, key_id, key, idempotency.request_digest(mail),
                                          uuid.uuid4())
    assert claimed is None
    response = await client.post("/api/v1/send-email", json=mail,
                                 headers={**sender, IDEMPOTENCY_HEADER: key})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "idempotency_request_in_progress"
    assert response.headers["Retry-After"] == "1"


def _missing(shown: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    """The fields of ``shown`` the schema does not describe, nested lists included."""
    properties = schema.get("properties", {})
    missing = [f"{where}.{name}" for name in shown if name not in properties]
    for name, value in shown.items():
        items = properties.get(name, {}).get("items", {})
        for entry in value if isinstance(value, list) else ():
            if isinstance(entry, dict):
                missing += _missing(entry, items, f"{where}.{name}[]")
    return missing


async def test_the_openapi_message_schema_describes_every_field_shown(
    client: Client, sender: dict[str, str]
) -> None:
    sent = await client.post("/api/v1/send-email", json=body(tags=["t"]), headers=sender)
    assert sent.status == 202, await sent.text()
    shown = await (await client.get(sent.headers["Location"], headers=sender)).json()
    document = await (await client.get("/api/v1/openapi.json")).json()
    schema = document["components"]["schemas"]["OutboundMessage"]
    assert shown["recipients"], shown
    assert _missing(shown, schema, "message") == []
    assert shown["status"] in schema["properties"]["status"]["enum"]
    recipient = schema["properties"]["recipients"]["items"]
    assert shown["recipients"][0]["status"] in recipient["properties"]["status"]["enum"]


async def test_a_key_reused_for_another_body_names_the_header_and_the_remedy(
    client: Client, sender: dict[str, str]
) -> None:
    headers = {**sender, IDEMPOTENCY_HEADER: f"reused-{uuid.uuid4().hex}"}
    first = await client.post("/api/v1/send-email", json=body(), headers=headers)
    assert first.status == 202, await first.text()
    second = await client.post("/api/v1/send-email", json=body(), headers=headers)
    assert second.status == 422
    error = (await second.json())["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["details"] == [{
        "field": "Idempotency-Key", "code": "idempotency_key_reused",
        "message": "used in the last 24 hours for a request with another body: "
                   "a new request needs a new key",
    }]


def _size_codes_documented() -> str:
    """The 413 row of the send API's table in docs/api.md."""
    table = API_DOC.read_text().split("The send API (`POST /api/v1/send-email`)")[1]
    return next(line for line in table.splitlines() if line.startswith("| 413 |"))


async def test_each_size_refusal_has_the_code_the_docs_give_what_is_too_large(
    client: Client, sender: dict[str, str], set_runtime: SetRuntime
) -> None:
    """A client tells a file to shrink from a text to shorten by the code alone: the
    docs said only that one of two codes came for "text, html, an attachment"."""
    await set_runtime(max_attachment_bytes=1000, max_message_bytes=4000)
    client.app[RUNTIME].invalidate()
    try:
        file = {"filename": "a.bin", "content_type": "application/octet-stream",
                "content": base64.b64encode(b"x" * 1001).decode()}
        answers = [await client.post("/api/v1/send-email", json=mail, headers=sender)
                   for mail in (body(text="x" * 4001), body(attachments=[file]))]
        shown = [((await answer.json())["error"]["code"], answer.status) for answer in answers]
    finally:
        await set_runtime(max_attachment_bytes=None, max_message_bytes=None)
        client.app[RUNTIME].invalidate()
    assert shown == [("body_too_large", 413), ("message_too_large", 413)]
    row = _size_codes_documented()
    assert "`body_too_large`: `text` or `html` is over `max_message_bytes`" in row
    assert "`message_too_large`: an attachment is over `max_attachment_bytes`" in row
