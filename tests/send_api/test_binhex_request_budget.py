"""The BinHex reads of a send request share one budget, as the milter's reads of the
message it becomes do (``uuencode.Budget``): a request whose texts, text/plain
attachments and signed data cost more in all is refused, where it was accepted (202)
and its message then flagged ``unscanned_text`` (malformed) by the milter and held."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest

from postwarden_admin_api.send.attachments import UNREAD_BINHEX, UNREADABLE_SIGNED
from postwarden_admin_api.send.build import build_message
from postwarden_admin_api.send.request_model import Attachment, Caps, parse_request
from postwarden_policies import Envelope, parse_message, uuencode
from tests import binhex
from tests.fixtures.scripted_smtp import Scripted

from .conftest import Client, body, relayed
from .test_attachment_smime import _signed

pytestmark = pytest.mark.postgres

# A file whose head is read through 4,096 0x90s (the most one read decodes) and has no
# marks to read: half the request's decoys spend half its 0x90s.
DECOY = binhex.binhex_block(b"\x01" + b"\x90\x01" * 5_000) + b"x\r\n"
HALF = uuencode.Budget().runs // 4096 // 2
CAPS = Caps(max_recipients=5, max_message_bytes=10_000_000, max_attachment_bytes=10_000_000)


def _text_file(decoys: int) -> Attachment:
    return Attachment("notes.txt", "text/plain", DECOY * decoys)


def _signed_text(decoys: int) -> Attachment:
    # Signed data holding a text without a header: read as text/plain.
    return Attachment("smime.p7m", "application/pkcs7-mime", _signed(b"\r\n" + DECOY * decoys))


def _request(attachment: Attachment) -> dict[str, Any]:
    return body(subject=f"binhex {uuid.uuid4()}", text=(DECOY * HALF).decode(), attachments=[{
        "filename": attachment.filename, "content_type": attachment.content_type,
        "content": base64.b64encode(attachment.content).decode()}])


def _milter_flags(request: dict[str, Any], attachment: Attachment) -> set[str]:
    """The flags the milter gives the message the service builds of ``request`` with
    ``attachment`` in place of its own (taken whatever the checks say)."""
    parsed = parse_request({**request, "attachments": []}, CAPS, lambda mailbox: True)
    message = build_message(dataclasses.replace(parsed, attachments=(attachment,)),
                            "<budget@example.com>", dt.datetime.now(dt.UTC))
    return parse_message(message, Envelope()).flags


@pytest.mark.parametrize(("attached", "refusal"), [
    pytest.param(_text_file, UNREAD_BINHEX, id="text-attachment"),
    pytest.param(_signed_text, UNREADABLE_SIGNED, id="signed-data"),
])
async def test_binhex_reads_share_one_budget_in_a_request(
    client: Client, sender: dict[str, str], attached: Any, refusal: str,
    smtp_server: tuple[Scripted, int],
) -> None:
    over = _request(attached(HALF))
    assert "unscanned_text" in _milter_flags(over, attached(HALF))
    response = await client.post("/api/v1/send-email", headers=sender, json=over)
    assert response.status == 422, await response.text()
    assert [(d["field"], d["code"], d["message"])
            for d in (await response.json())["error"]["details"]] == [
        ("attachments[0]", "attachment_not_allowed", refusal)]
    within = _request(attached(HALF - 1))
    response = await client.post("/api/v1/send-email", headers=sender, json=within)
    assert response.status == 202, await response.text()
    sent = await relayed(smtp_server, (await response.json())["message_id"])
    assert "unscanned_text" not in parse_message(sent, Envelope()).flags
