"""``POST /api/v1/policies/test`` measured the uploaded message as uploaded: a sample
with LF line ends (as git checks an .eml out on Linux) was smaller than the milter
counts it, which gets every line ended by CRLF from Postfix, so a ``size_over`` or
``max_message_bytes`` case near the limit passed the API's test and was decided
otherwise by the milter. It is now evaluated as received, as the CLI's eval and test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
LINES = 20
POLICY = ("version: 1\nname: sized\nrules:\n  - name: big\n    when: {size_over: 120}\n"
          "    then: reject\n")


async def _action(client: TestClient[Any, Any], key: str, message: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("message", message, filename="m.eml", content_type="message/rfc822")
    form.add_field("policy", POLICY)
    form.add_field("recipients", "a@b.test")
    response = await client.post("/api/v1/policies/test", data=form, headers=bearer(key))
    assert response.status == 200, await response.text()
    return str((await response.json())["action"])


async def test_the_message_is_measured_as_the_milter_gets_it(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # 112 bytes with LF line ends, 134 with CRLF, as Postfix hands it to the milter.
    lf = b"Subject: x\n\n" + b"line\n" * LINES
    assert await _action(admin_client, admin_key, lf) == "reject"
    # No line end after the last line: Postfix adds one.
    assert await _action(admin_client, admin_key, b"Subject: x\n\n" + b"l" * 106) == "reject"
    assert await _action(admin_client, admin_key, b"Subject: x\r\n\r\nsmall\r\n") == "accept"
    assert "as Postfix hands it to the milter" in " ".join(API_DOC.read_text().split())
