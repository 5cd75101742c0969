"""A policy upload is read as UTF-8 only: one labelled in another charset is refused
unread (415), as a JSON body so labelled is, not read as UTF-8 all the same."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

POLICY = ("version: 1\nname: charset\nrules:\n  - name: r\n    when:\n"
          "      subject: café\n    then: reject\n")


@pytest.mark.parametrize("content_type", ["application/yaml; charset=iso-8859-1",
                                          "application/json; charset=utf-16",
                                          "text/plain; charset=windows-1252"])
async def test_a_policy_labelled_in_another_charset_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, content_type: str
) -> None:
    # Its UTF-8 bytes, labelled Latin-1, were stored as "café": a client that meant
    # "cafÃ©" got another rule than it sent, and one that sent Latin-1 a 422 "not UTF-8".
    response = await admin_client.post("/api/v1/policies", data=POLICY.encode(),
                                       headers={**bearer(admin_key),
                                                "Content-Type": content_type})
    assert response.status == 415, await response.text()
    assert (await response.json())["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("charset", ["", "; charset=utf-8", '; charset="UTF8"',
                                     "; charset=us-ascii"])
async def test_a_policy_in_utf8_is_taken_however_labelled(
    admin_client: TestClient[Any, Any], admin_key: str, charset: str
) -> None:
    response = await admin_client.post("/api/v1/policies", data=POLICY.encode(),
                                       headers={**bearer(admin_key),
                                                "Content-Type": f"application/yaml{charset}"})
    assert response.status in (200, 201), await response.text()


async def test_every_media_type_a_policy_is_taken_in_is_the_one_the_openapi_lists(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """A client generated from the document sent only the two it declared, and one
    sending text/yaml, taken all the same, could not know that it would be."""
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    declared = document["paths"]["/api/v1/policies"]["post"]["requestBody"]["content"]
    candidates = sorted({*declared, "application/yaml", "application/x-yaml", "text/yaml",
                         "text/x-yaml", "application/json", "text/plain",
                         "application/octet-stream", "application/merge-patch+json"})
    taken = []
    for content_type in candidates:
        response = await admin_client.post("/api/v1/policies", data=POLICY.encode(),
                                           headers={**bearer(admin_key),
                                                    "Content-Type": content_type})
        assert response.status in (200, 201, 415), await response.text()
        if response.status == 415:
            refusal = (await response.json())["error"]["message"]
            assert refusal == f"send the policy as one of {', '.join(declared)}"
        else:
            taken.append(content_type)
    assert taken == sorted(declared)
