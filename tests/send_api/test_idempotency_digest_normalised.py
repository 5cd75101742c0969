"""The ``Idempotency-Key`` digest is taken over the request as the service reads it:
a null for a field left out, a lone address for a list of one and the JSON key order
make no other request."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from postwarden_admin_api.send import idempotency

from .conftest import Client, body

SEND = "/api/v1/send-email"
MAIL: dict[str, Any] = {"from": "app@example.com", "to": ["a@example.org"],
                        "subject": "Hi", "text": "Hello"}


@pytest.mark.parametrize(("sent", "as_read"), [
    pytest.param({**MAIL, "cc": None, "attachments": None}, MAIL, id="null-fields"),
    pytest.param({**MAIL, "to": "a@example.org"}, MAIL, id="lone-address"),
    pytest.param({**MAIL, "reply_to": "r@example.org"}, {**MAIL, "reply_to": ["r@example.org"]},
                 id="lone-reply-to"),
])
def test_what_the_service_reads_alike_has_one_digest(
    sent: dict[str, Any], as_read: dict[str, Any]
) -> None:
    assert idempotency.request_digest(sent) == idempotency.request_digest(as_read)


async def test_a_retry_written_otherwise_gets_the_first_answer(
    client: Client, sender: dict[str, str]
) -> None:
    headers = {**sender, "Idempotency-Key": f"same-{uuid.uuid4().hex}"}
    first_body = body()
    first = await client.post(SEND, json=first_body, headers=headers)
    assert first.status == 202, await first.text()
    (address,) = first_body["to"]
    # Keys in another order, a null for a field left out, the lone address unlisted.
    retry = {"cc": None, **dict(reversed(first_body.items())), "to": address}
    again = await client.post(SEND, json=retry, headers=headers)
    assert again.status == 202, await again.text()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await again.json() == await first.json()
    other = await client.post(SEND, json={**first_body, "cc": ["c@example.org"]},
                              headers=headers)
    assert other.status == 422
    assert (await other.json())["error"]["code"] == "idempotency_key_reused"
