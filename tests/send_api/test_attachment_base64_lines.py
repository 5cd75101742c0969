"""An attachment's base64 ``content`` may be wrapped in lines, as MIME encoders write it
(the ``base64`` tool, Python's ``base64.encodebytes``, Java's MIME encoder: 76
characters a line, LF or CRLF); any other character between is still refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.send.request_model import Caps, parse_request

DATA = bytes(range(256)) * 2  # 512 bytes: 684 base64 characters, 9 lines of 76
WRAPPED = base64.encodebytes(DATA).decode()  # LF after every 76 characters, and at the end
CAPS = Caps(max_recipients=5, max_message_bytes=10_000, max_attachment_bytes=1_000)


def _parse(content: str) -> Any:
    body = {"from": "App <app@example.com>", "to": ["alice@example.org"], "subject": "Hi",
            "text": "Hello", "attachments": [
                {"filename": "data.bin", "content_type": "application/octet-stream",
                 "content": content}]}
    return parse_request(body, CAPS, lambda mailbox: True)


@pytest.mark.parametrize("content", [
    pytest.param(WRAPPED, id="lf-lines"),
    pytest.param(WRAPPED.replace("\n", "\r\n"), id="crlf-lines"),
    pytest.param(WRAPPED.rstrip("\n").replace("\n", "\r\n"), id="crlf-no-final-break"),
    pytest.param(base64.b64encode(DATA).decode(), id="one-line"),
])
def test_base64_in_lines_is_read(content: str) -> None:
    assert "\n" in WRAPPED  # the data is long enough to be wrapped
    assert _parse(content).attachments[0].content == DATA


@pytest.mark.parametrize("content", [
    pytest.param(WRAPPED.replace("\n", " "), id="spaces"),
    pytest.param(WRAPPED.replace("\n", "\t"), id="tabs"),
    pytest.param(WRAPPED.replace("\n", "\v"), id="vertical-tab"),
    pytest.param(WRAPPED.replace("\n", "\u2028"), id="unicode-line-separator"),
    pytest.param(WRAPPED.replace("\n", "*"), id="junk"),
    pytest.param(WRAPPED[:-3] + "\n", id="truncated"),
])
def test_anything_else_between_the_characters_is_refused(content: str) -> None:
    with pytest.raises(ApiError) as caught:
        _parse(content)
    assert caught.value.details == [{"field": "attachments[0].content", "code": "invalid_field",
                                     "message": "not valid base64"}]


@pytest.mark.parametrize("content", [
    pytest.param("YWJj=", id="one-past-a-whole-group"),
    pytest.param("YWJj====", id="a-group-of-padding"),
    pytest.param(base64.encodebytes(DATA[:510]).decode() + "==",
                 id="padding-on-a-line-of-its-own"),
])
def test_padding_past_the_last_group_is_refused(content: str) -> None:
    """Strict decoding took "YWJj=" for "abc": "=" only completes the last group of four."""
    with pytest.raises(ApiError) as caught:
        _parse(content)
    assert caught.value.details == [{
        "field": "attachments[0].content", "code": "invalid_field",
        "message": 'not valid base64: "=" after a complete group of 4 characters'}]
