"""Every GET of the OpenAPI document the service serves, called for real: what it answers
(status, body or none, media type, the error shape) is what the document declares.

schemathesis (test_schemathesis.py) checks a body against the schema declared for its
media type; a response declared with no body at all, or without the media type sent,
it lets pass.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]
POLICY = ("version: 1\nname: walked\npriority: 50\nrules:\n  - name: walked-block\n"
          "    when:\n      sender: [bad@evil.test]\n    then: reject\n")


async def _path_values(client: Client, key: str) -> dict[str, str]:
    """A value for each path parameter: ids that exist where one can be made."""
    response = await client.post("/api/v1/policies", data=POLICY.encode(), headers={
        **bearer(key), "Content-Type": "application/yaml"})
    assert response.status in (200, 201), await response.text()
    revision = str((await response.json())["id"])
    return {"revision_id": revision, "other_id": revision, "name": "walked",
            "key_id": key.split("_")[1], "event_id": str(uuid.uuid4()), "id": "1",
            "delivery_id": "1"}


def _calls(document: dict[str, Any], values: dict[str, str]
           ) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(path, query, operation) of every GET, once per value of an enumerated
    ``format`` parameter (each answers in another media type)."""
    calls = []
    for template, operations in document["paths"].items():
        operation = operations.get("get")
        if operation is None:
            continue
        path = template.format(**values)
        formats = [param["schema"]["enum"] for param in operation.get("parameters", [])
                   if param["name"] == "format" and "enum" in param["schema"]]
        queries = [{"format": kind} for kind in formats[0]] if formats else [{}]
        calls += [(path, query, operation) for query in queries]
    return calls


async def test_every_get_answers_as_the_document_declares(
    admin_client: Client, admin_key: str
) -> None:
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    calls = _calls(document, await _path_values(admin_client, admin_key))
    wrong = []
    for path, query, operation in calls:
        response = await admin_client.get(path, params=query, headers=bearer(admin_key))
        body = await response.read()
        declared = operation["responses"].get(str(response.status),
                                              operation["responses"].get("default"))
        where = f"GET {path} {query} -> {response.status}"
        if declared is None:
            wrong.append(f"{where}: status not declared")
            continue
        kinds = declared.get("content", {})
        if body and response.content_type not in kinds:
            wrong.append(f"{where}: {response.content_type} body, declared {sorted(kinds)}")
        if response.status >= 400:
            error = (await response.json())["error"]
            if sorted(error) != ["code", "details", "message"]:
                wrong.append(f"{where}: error shape {sorted(error)}")
    assert len(calls) > 20
    assert wrong == []
