"""Messages the milter rebuilds, as the recipient gets them through the real Postfix:
what a mail reader shows of them afterwards (the policy set is tests/e2e/policies)."""

from __future__ import annotations

import base64
import email
import email.policy
import random
from email.message import EmailMessage

import pytest

from tests.fixtures.postfix import has_header, send_message

from . import messages
from .conftest import MailSystem
from .messages import RECIPIENT, SENDER, Sample

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def _delivered(system: MailSystem, sample: Sample) -> EmailMessage:
    result = send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert result.accepted, result
    data = system.capture.wait_for_message(has_header("Message-ID", sample.message_id)).data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_a_file_stripped_from_the_end_of_an_alternative_leaves_the_body_shown(
    mail_system: MailSystem,
) -> None:
    # Readers show the last alternative they can: the text notice in the file's place
    # was shown instead of the HTML body.
    payload = base64.encodebytes(random.Random(3).randbytes(200 * 1024)).decode()
    sample = messages.multipart("alternative", [
        "Content-Type: text/plain; charset=us-ascii\n\nThe plain body.\n",
        "Content-Type: text/html; charset=us-ascii\n\n<p>The HTML body.</p>\n",
        'Content-Type: application/pdf; name="scan.pdf"\nContent-Transfer-Encoding: base64\n\n'
        + payload,
    ])
    got = _delivered(mail_system, sample)
    notice, plain, html = [part for part in got.iter_parts() if isinstance(part, EmailMessage)]
    assert "scan.pdf" in notice.get_content() and notice.get_content_type() == "text/plain"
    assert plain.get_content() == "The plain body."
    assert html.get_content() == "<p>The HTML body.</p>"
    body = got.get_body(("html", "plain"))
    assert body is not None and body.get_content() == "<p>The HTML body.</p>"
