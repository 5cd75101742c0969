"""S/MIME-signed Outlook mail through the real Postfix under the e2e policy (HTML
sanitized, ``signed_mail: skip`` by default): Word's harmless markup goes out as it came,
signature intact, and the audit row says so (its signature's logo, Word's picture ids on
the images, and Chinese and Japanese font names, escaped, too); a script in it holds the message."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.fixtures.postfix import has_header, send_message
from tests.smime_outlook import (
    LOGO_IMAGES,
    LOGO_SIGNATURE,
    OWA_QUOTED_REPLY,
    cjk_outlook_html,
    outlook_html,
    signed_outlook_mail,
)

from .conftest import MailSystem
from .messages import RECIPIENT, SENDER, Delivered, Sample

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def _sample(html: str, images: tuple[str, ...] = ()) -> Sample:
    message_id = f"<outlook-{uuid.uuid4().hex[:12]}@example.org>"
    headers = (f"From: Alice <{SENDER}>\r\nTo: Bob <{RECIPIENT}>\r\n"
               f"Subject: figures\r\nMessage-ID: {message_id}\r\n")
    return Sample(message_id, signed_outlook_mail(html, headers, images=images))


def _changes(row: dict[str, Any]) -> list[dict[str, Any]]:
    changes = row["changes"]
    parsed: list[dict[str, Any]] = json.loads(changes) if isinstance(changes, str) else changes
    return parsed


@pytest.mark.parametrize(("html", "images", "part", "removed"), [
    # Word's <o:p> marks, <meta> tags, namespaces and sheet: what sanitizing would remove.
    (outlook_html(), (), "1.2", ("o:p", 6)),
    # A signature's logo: Word's picture ids on the images, kept.
    (outlook_html(LOGO_SIGNATURE), LOGO_IMAGES, "1.1.2", ("@id", 2)),
    # A reply quoting Outlook on the web, which put x_ before them (x_Picture_x0020_1).
    (outlook_html(OWA_QUOTED_REPLY), LOGO_IMAGES, "1.1.2", ("@id", 2)),
    # Chinese and Japanese font names, escaped in the sheet and the styles.
    (cjk_outlook_html(), (), "1.2", ("style", 1)),
])
def test_signed_outlook_html_arrives_as_signed(
        mail_system: MailSystem, html: str, images: tuple[str, ...], part: str,
        removed: tuple[str, int]) -> None:
    sample = _sample(html, images)
    result = send_message(mail_system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = mail_system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    # The signed body byte for byte: the signature still verifies.
    assert Delivered.parse(delivered.data).body == Delivered.parse(sample.data).body
    row = mail_system.audit_row(sample.message_id)
    assert row["action"] == "accept"
    [kept] = _changes(row)
    assert (kept["kind"], kept["part"]) == ("signed_html_kept", part)
    assert dict(kept["removed"])[removed[0]] == removed[1]


def test_signed_outlook_html_with_a_script_is_held(mail_system: MailSystem) -> None:
    sample = _sample(outlook_html('<p class="MsoNormal"><script>steal()</script></p>\n'))
    result = send_message(mail_system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert result.accepted, result
    assert result.queue_id is not None
    mail_system.postfix.wait_for_log(rf"{result.queue_id}: milter-hold: END-OF-MESSAGE")
    assert result.queue_id in mail_system.postfix.held_queue_ids()
    row = mail_system.audit_row(sample.message_id)
    assert row["action"] == "quarantine"
    assert _changes(row) == []
