"""A malformed ``Idempotency-Key`` is listed with the body's field errors, in one 422
answer, and claims nothing."""

from __future__ import annotations

import uuid

import pytest

from postwarden_admin_api.context import POOL

from .conftest import Client, body

BAD_KEYS = [
    pytest.param("x" * 256, id="too-long"),
    pytest.param("", id="empty"),
    pytest.param("two words", id="space"),
    pytest.param("tab\there", id="control-character"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_a_bad_key_comes_with_the_bodys_field_errors(
    client: Client, sender: dict[str, str], key: str
) -> None:
    response = await client.post(
        "/api/v1/send-email", headers={**sender, "Idempotency-Key": key},
        json=body(to=["bad"], subject=""),
    )
    assert response.status == 422
    error = (await response.json())["error"]
    assert [(d["field"], d["code"]) for d in error["details"]] == [
        ("Idempotency-Key", "invalid_field"), ("to[0]", "invalid_recipient"),
        ("subject", "invalid_subject"),
    ]


async def test_a_bad_key_alone_refuses_a_good_body(
    client: Client, sender: dict[str, str]
) -> None:
    subject = f"bad key {uuid.uuid4()}"
    response = await client.post("/api/v1/send-email", json=body(subject=subject),
                                 headers={**sender, "Idempotency-Key": "x" * 256})
    assert response.status == 422
    assert (await response.json())["error"] == {
        "code": "invalid_field", "message": "the field is invalid",
        "details": [{"field": "Idempotency-Key", "code": "invalid_field",
                     "message": "1 to 255 visible ASCII characters"}],
    }
    stored = await client.app[POOL].fetchval(
        "SELECT count(*) FROM outbound_messages WHERE subject = $1", subject)
    assert stored == 0


async def test_the_most_serious_problem_still_names_the_status(
    client: Client, sender: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/send-email", headers={**sender, "Idempotency-Key": ""},
        json=body(**{"from": "someone@elsewhere.example"}),
    )
    assert response.status == 403
    error = (await response.json())["error"]
    assert error["code"] == "sender_not_allowed"
    assert [d["field"] for d in error["details"]] == ["Idempotency-Key", "from"]
