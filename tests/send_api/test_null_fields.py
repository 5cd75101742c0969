"""``null`` for an optional field of the send request is that field left out, in the
validation and in the OpenAPI document alike; required fields stay required."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.send.openapi_paths import SCHEMAS
from postwarden_admin_api.send.request_model import FIELDS, OPTIONAL_FIELDS, parse_request

from .test_request_model import BASE, CAPS, allow_all, attached

# Every field given, so that leaving any optional one out still makes a valid request.
FULL: dict[str, Any] = {
    **BASE, "cc": ["carol@example.org"], "bcc": "dave@example.org",
    "reply_to": "help@example.com", "html": "<p>Hi</p>", "headers": {"X-Campaign": "c1"},
    **attached("a.txt", "text/plain", b"hello"), "tags": ["t1"], "metadata": {"k": "v"},
}


def test_the_required_fields_are_from_and_subject() -> None:
    assert set(FULL) == FIELDS
    assert FIELDS - OPTIONAL_FIELDS == {"from", "subject"}


@pytest.mark.parametrize("name", sorted(OPTIONAL_FIELDS))
def test_null_is_the_field_left_out(name: str) -> None:
    left_out = {key: value for key, value in FULL.items() if key != name}
    assert parse_request({**FULL, name: None}, CAPS, allow_all) == parse_request(
        left_out, CAPS, allow_all)


def details(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ApiError) as caught:
        parse_request(body, CAPS, allow_all)
    return [(d["field"], d["code"]) for d in caught.value.details]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"from": None}, ("from", "invalid_field"), id="from"),
        pytest.param({"subject": None}, ("subject", "invalid_subject"), id="subject"),
        pytest.param({"text": None, "html": None}, ("text", "empty_body"), id="no-body"),
        pytest.param({"to": None}, ("to", "invalid_recipient"), id="no-recipient"),
        pytest.param({"to": [None]}, ("to[0]", "invalid_recipient"), id="in-a-list"),
        pytest.param({"tags": [None]}, ("tags[0]", "invalid_field"), id="a-null-tag"),
        pytest.param({"headers": {"X-A": None}}, ("headers.X-A", "invalid_header"),
                     id="a-null-header"),
        pytest.param({"surprise": None}, ("surprise", "invalid_field"), id="unknown-field"),
    ],
)
def test_null_does_not_stand_in_for_what_is_required(
    changes: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert expected in details({**BASE, **changes})


def test_the_openapi_schema_takes_null_for_exactly_the_optional_fields() -> None:
    schema = SCHEMAS["SendEmail"]
    assert set(schema["properties"]) == FIELDS
    validator = jsonschema.Draft202012Validator(schema)
    for name in FIELDS:
        nulled = {**FULL, name: None}
        assert validator.is_valid(nulled) == (name in OPTIONAL_FIELDS), name
