"""An attached TNEF (``winmail.dat``) is read through as the milter reads it: each file
inside is checked like an attachment of its own, and one that cannot be read is refused."""

from __future__ import annotations

from typing import Any

import pytest

from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.send.attachments import MAX_TNEF_FILES, SHOWN_NAME
from postwarden_admin_api.send.request_model import Caps, parse_request
from tests.policies.test_tnef import (
    EXE,
    INVOICE,
    NOTE,
    _attachment,
    _message_object,
    _stream,
    _string8,
    _unicode,
)

from .conftest import Client, body
from .test_request_model import BASE, allow_all, attached, b64

CAPS = Caps(max_recipients=5, max_message_bytes=1_000_000, max_attachment_bytes=500_000)
NOT_ALLOWED = "attachment_not_allowed"
FORWARDED_SCRIPT = _attachment(  # an attached Outlook message holding a script
    None, None, _unicode(0x3001, "Fwd: run this"),
    _message_object(_stream(_attachment("run.js", b"#!/bin/sh\n"))),
)


def problems(changes: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ApiError) as caught:
        parse_request({**BASE, **changes}, CAPS, allow_all)
    return caught.value.details


@pytest.mark.parametrize(
    ("filename", "content_type", "tnef", "shown"),
    [
        pytest.param("winmail.dat", "application/ms-tnef", _stream(NOTE, INVOICE),
                     "'INVOIC~1.EXE' in this TNEF: files ending in .exe", id="exe-name"),
        pytest.param("winmail.dat", "application/ms-tnef",
                     _stream(_attachment(None, None, _unicode(0x3707, "invoice.pdf.exe"))),
                     "'invoice.pdf.exe' in this TNEF: files ending in .exe",
                     id="exe-long-file-name"),
        pytest.param("winmail.dat", "application/ms-tnef", _stream(_attachment("notes.txt", EXE)),
                     "'notes.txt' in this TNEF: the content is application/x-dosexec",
                     id="exe-content"),
        pytest.param("winmail.dat", "application/vnd.ms-tnef",
                     _stream(_attachment("a.txt", b"x", _string8(0x370E, "Text/JavaScript"))),
                     "'a.txt' in this TNEF: content type text/javascript", id="mime-tag"),
        pytest.param("winmail.dat", "application/ms-tnef", _stream(FORWARDED_SCRIPT, NOTE),
                     "'run.js' in this TNEF: files ending in .js", id="in-attached-message"),
        pytest.param("report.pdf", "application/pdf", _stream(INVOICE),
                     "'INVOIC~1.EXE' in this TNEF", id="tnef-by-content-only"),
        pytest.param("winmail.dat", "application/ms-tnef", _stream(NOTE, NOTE)[:-3],
                     "cannot be read to its end", id="cut-short"),
        pytest.param("winmail.dat", "application/octet-stream", b"not a TNEF stream",
                     "cannot be read to its end", id="named-tnef-but-none"),
        pytest.param("mail.bin", "application/ms-tnef", b"not a TNEF stream",
                     "cannot be read to its end", id="typed-tnef-but-none"),
        pytest.param("winmail.dat", "application/ms-tnef",
                     _stream(*[_attachment("a.txt", b"x")] * (MAX_TNEF_FILES + 1)),
                     "cannot be read to its end", id="too-many-files"),
    ],
)
def test_a_file_in_a_tnef_is_checked(
    filename: str, content_type: str, tnef: bytes, shown: str
) -> None:
    [problem] = problems(attached(filename, content_type, tnef))
    assert (problem["field"], problem["code"]) == ("attachments[0]", NOT_ALLOWED)
    assert shown in problem["message"]


def test_a_long_inner_name_is_shown_cut() -> None:
    name = "a" * 5000 + ".exe"
    [problem] = problems(attached("winmail.dat", "application/ms-tnef",
                                  _stream(_attachment(name, b"x"))))
    assert len(problem["message"]) < SHOWN_NAME + 100
    assert problem["message"].endswith("files ending in .exe are not allowed")


def test_a_harmless_tnef_is_sent() -> None:
    request = parse_request({**BASE, **attached("winmail.dat", "application/ms-tnef",
                                                _stream(NOTE))}, CAPS, allow_all)
    assert [a.filename for a in request.attachments] == ["winmail.dat"]


async def test_the_api_refuses_an_executable_in_winmail_dat(
    client: Client, sender: dict[str, str]
) -> None:
    attachment = {"filename": "winmail.dat", "content_type": "application/ms-tnef",
                  "content": b64(_stream(NOTE, INVOICE))}
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(attachments=[attachment]))
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == NOT_ALLOWED
    assert error["details"] == [{
        "field": "attachments[0]", "code": NOT_ALLOWED,
        "message": "'INVOIC~1.EXE' in this TNEF: files ending in .exe are not allowed",
    }]
