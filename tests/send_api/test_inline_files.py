"""Inline files: an attachment with a ``content_id`` is shown by the html body
(``<img src="cid:logo">``), in a multipart/related around it; the content_id is checked
like every other field, and the file like every other attachment."""

from __future__ import annotations

import base64
import datetime as dt
import email
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.send.build import build_message
from postwarden_admin_api.send.request_model import MAX_CONTENT_ID, Caps, parse_request

CAPS = Caps(max_recipients=5, max_message_bytes=100_000, max_attachment_bytes=10_000)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
HTML = '<p>Hi <img src="cid:logo"></p>'


def _file(content_id: Any = "logo", filename: str = "logo.png", content: bytes = PNG,
          content_type: str = "image/png") -> dict[str, Any]:
    """An attachment; inline, unless ``content_id`` is None."""
    item = {"filename": filename, "content_type": content_type,
            "content": base64.b64encode(content).decode()}
    return item if content_id is None else {**item, "content_id": content_id}


def _body(**changes: Any) -> dict[str, Any]:
    body = {"from": "app@example.com", "to": ["alice@example.org"], "subject": "Hi",
            "text": "Hi", "html": HTML, "attachments": [_file()], **changes}
    return {k: v for k, v in body.items() if v is not None}


def _built(**changes: Any) -> EmailMessage:
    request = parse_request(_body(**changes), CAPS, lambda m: True)
    data = build_message(request, "<0123@example.com>", dt.datetime(2026, 12, 6, tzinfo=dt.UTC))
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _problems(**changes: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(ApiError) as caught:
        parse_request(_body(**changes), CAPS, lambda m: True)
    return [(d["field"], d["code"], d["message"]) for d in caught.value.details]


def _structure(part: EmailMessage) -> Any:
    if part.is_multipart():
        return (part.get_content_type(), [_structure(p) for p in part.iter_parts()])
    return part.get_content_type()


def test_an_inline_file_goes_in_a_related_part_around_the_html() -> None:
    message = _built(attachments=[_file(), _file(None, "r.pdf", b"%PDF-1.4", "application/pdf")])
    assert _structure(message) == ("multipart/mixed", [
        ("multipart/alternative", ["text/plain",
                                   ("multipart/related", ["text/html", "image/png"])]),
        "application/pdf"])
    related = message.get_payload()[0].get_payload()[1]
    assert related.get_param("type") == "text/html"
    image = related.get_payload()[1]
    assert (image["Content-ID"], image.get_content_disposition()) == ("<logo>", "inline")
    assert (image.get_filename(), image.get_content()) == ("logo.png", PNG)
    assert [a.get_filename() for a in message.iter_attachments()] == ["r.pdf"]


def test_with_html_alone_the_message_is_the_related_part() -> None:
    message = _built(text=None)
    assert _structure(message) == ("multipart/related", ["text/html", "image/png"])


def test_a_content_id_at_its_limit_goes_out_whole() -> None:
    """The registry encoded a Content-ID too long for a line: no reader found it."""
    content_id = "a" * (MAX_CONTENT_ID - len("@example.com")) + "@example.com"
    image = _built(attachments=[_file(content_id)]).get_payload()[1].get_payload()[1]
    assert image["Content-ID"] == f"<{content_id}>"


@pytest.mark.parametrize("content_id", [
    pytest.param("<logo>", id="angle-brackets"),
    pytest.param("cid:logo", id="cid-url"),
    pytest.param("logo\r\nBcc: victim@evil.example", id="line-break"),
    pytest.param("my logo", id="space"),
    pytest.param("a%20b", id="percent"),
    pytest.param("", id="empty"),
    pytest.param("x" * (MAX_CONTENT_ID + 1), id="too-long"),
    pytest.param("lögo", id="non-ascii"),
])
def test_a_content_id_that_is_no_msg_id_token_is_refused(content_id: str) -> None:
    [(field, code, message)] = _problems(attachments=[_file(content_id)])
    assert (field, code) == ("attachments[0].content_id", "invalid_field")
    assert message.startswith(f"1 to {MAX_CONTENT_ID} of A-Z")


@pytest.mark.parametrize("content_id", [None, 7, ["logo"]], ids=["null", "number", "list"])
def test_a_content_id_that_is_no_string_is_refused(content_id: Any) -> None:
    item = {**_file(), "content_id": content_id}
    assert _problems(attachments=[item]) == [
        ("attachments[0].content_id", "invalid_field", "expected a string")]


def test_a_content_id_given_twice_in_any_case_is_refused() -> None:
    files = [_file("logo"), _file("other"), _file("LOGO", "logo2.png")]
    assert _problems(attachments=files) == [
        ("attachments[2].content_id", "invalid_field", "attachments[0] has this content_id too")]


def test_an_inline_file_without_an_html_body_is_refused_with_the_other_problems() -> None:
    assert _problems(html=None, subject="") == [
        ("subject", "invalid_subject", "the subject is empty"),
        ("attachments[0].content_id", "invalid_field",
         "an inline file is shown by the html body (cid:): give html")]


@pytest.mark.parametrize(("file", "reason"), [
    pytest.param(_file(filename="logo.exe"), "files ending in .exe are not allowed", id="name"),
    pytest.param(_file(content=b"MZ\x90\x00" + bytes(60)), "the content is", id="content"),
    pytest.param(_file(content_type="application/x-msdownload"), "content type", id="type"),
])
def test_an_inline_file_is_checked_like_any_attachment(file: dict[str, Any],
                                                       reason: str) -> None:
    [(field, code, message)] = _problems(attachments=[file])
    assert (field, code) == ("attachments[0]", "attachment_not_allowed")
    assert message.startswith(reason)
