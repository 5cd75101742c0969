"""What the send API, the message search and the suppression list answer, successes
and refusals alike, validates against the schema the served document declares for
that route, status and media type: a client generated from the document reads each
answer as it is. (schemathesis sends what the schemas allow, so rarely a body the
service refuses for its content, a replay, or a message read back.)"""

from __future__ import annotations

import json
import uuid
from typing import Any

import jsonschema
from aiohttp import ClientResponse

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, body

SEND = "/api/v1/send-email"
SUPPRESSIONS = "/api/v1/suppressions"


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


async def _problems(document: dict[str, Any], response: ClientResponse, method: str,
                    template: str) -> list[str]:
    """Why ``response`` is not an answer the document declares for the route: its
    status undeclared, its media type not one declared, or its body off the schema."""
    where = f"{method.upper()} {template} -> {response.status}"
    responses = document["paths"][template][method]["responses"]
    status = str(response.status) if str(response.status) in responses else "default"
    declared = responses.get(status, {}).get("content")
    if declared is None:
        return [f"{where}: status not declared"]
    if response.content_type not in declared:
        return [f"{where}: {response.content_type} not in {sorted(declared)}"]
    # The schema, resolved within the document ($refs to its components).
    schema = {**document, "$ref": _pointer("paths", template, method, "responses", status,
                                           "content", response.content_type, "schema")}
    validator = jsonschema.Draft202012Validator(schema)
    answer = json.loads(await response.read())
    return [f"{where}: {error.message[:160]} at {list(error.absolute_path)}"
            for error in validator.iter_errors(answer)]


async def test_send_and_message_answers_are_those_the_document_declares(
    client: Client, sender: dict[str, str], mint_key: MintKey
) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    other = bearer(await mint_key(Role.SENDER, ["app@example.com"]))
    retry = {**sender, "Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    mail = body(tags=["walk"], attachments=[{"filename": "résumé.pdf",
                                             "content_type": "application/pdf",
                                             "content": "JVBERi0xLjQK"}])
    as_text = {**sender, "Content-Type": "text/plain"}
    as_json = {**sender, "Content-Type": "application/json"}
    sends = [
        await client.post(SEND, json=mail, headers=retry),  # 202
        await client.post(SEND, json=mail, headers=retry),  # 202, replayed
        await client.post(SEND, json=body(subject="x" * 999), headers=sender),  # 422
        await client.post(SEND, json=body(foo=1, to=["a@b"]), headers=sender),  # 422
        await client.post(SEND, json=body(**{"from": "x@other.example"}), headers=sender),
        await client.post(SEND, data=json.dumps(mail), headers=as_text),  # 415
        await client.post(SEND, data=b"{not json", headers=as_json),  # 400
        await client.post(SEND, json=mail),  # 401
    ]
    sent = await sends[0].json()
    reads = [
        await client.get(f"/api/v1/messages/{sent['id']}", headers=sender),  # 200
        await client.get(f"/api/v1/messages/{sent['id']}", headers=other),  # 404
        await client.get(f"/api/v1/messages/{uuid.uuid4()}", headers=sender),  # 404
    ]
    searches = [
        await client.get("/api/v1/messages", params={"tag": "walk", "limit": "1"},
                         headers=sender),  # 200
        await client.get("/api/v1/messages", params={"limit": "0", "sender": "x"},
                         headers=sender),  # 422
        await client.get("/api/v1/messages", params={"cursor": "x"}, headers=sender),
    ]
    assert [r.status for r in sends] == [202, 202, 422, 422, 403, 415, 400, 401]
    assert [r.status for r in reads + searches] == [200, 404, 404, 200, 422, 422]
    problems = []
    for response in sends:
        problems += await _problems(document, response, "post", SEND)
    for response in reads:
        problems += await _problems(document, response, "get", "/api/v1/messages/{id}")
    for response in searches:
        problems += await _problems(document, response, "get", "/api/v1/messages")
    assert problems == []


async def test_suppression_answers_are_those_the_document_declares(
    client: Client, mint_key: MintKey
) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    operator = bearer(await mint_key(Role.OPERATOR))
    address = f"{uuid.uuid4().hex[:8]}@bücher.example"
    answers = [
        ("post", await client.post(SUPPRESSIONS, json={"address": address, "detail": "Zoë"},
                                   headers=operator)),  # 201
        ("post", await client.post(SUPPRESSIONS, json={"address": address},
                                   headers=operator)),  # 200: there already
        ("post", await client.post(SUPPRESSIONS, json={"address": "no", "reason": "x"},
                                   headers=operator)),  # 422
        ("get", await client.get(SUPPRESSIONS, params={"limit": "1"}, headers=operator)),
        ("get", await client.get(SUPPRESSIONS, params={"reasn": "x"}, headers=operator)),
        ("delete", await client.delete(SUPPRESSIONS, params={"address": address},
                                       headers=operator)),  # 200
        ("delete", await client.delete(SUPPRESSIONS, params={"address": address},
                                       headers=operator)),  # 404: lifted already
    ]
    assert [r.status for _, r in answers] == [201, 200, 422, 200, 422, 200, 404]
    problems = []
    for method, response in answers:
        problems += await _problems(document, response, method, SUPPRESSIONS)
    assert problems == []
