"""What Postfix repairs before the milter sees a message, which `postwarden-policy test`
and `eval` (reading a sample as written) cannot know: docs/policy-language.md says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import Envelope, load_policy_set
from postwarden_policies.engine import evaluate_message
from tests.fixtures.postfix import send_message, wait_for

from .conftest import POLICY_DIR, MailSystem, audit_rows
from .messages import RECIPIENT, SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

DOC = Path(__file__).parents[2] / "docs" / "policy-language.md"
HEAD = (f"From: Alice <{SENDER}>\r\nTo: {RECIPIENT}\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nSubject: hi\r\n")


@pytest.mark.parametrize(("message", "flag"), [
    (HEAD + "the body, without the blank line before it\r\n", "missing_header_separator"),
    ("the body, without a header field\r\n", "no_headers"),
    (HEAD.replace("Subject: hi", "Subject: hi\rX-Evil: yes") + "\r\nbody\r\n", "bare_cr"),
])
def test_a_message_postfix_repairs_is_flagged_by_eval_only(
    mail_system: MailSystem, message: str, flag: str
) -> None:
    """Postfix ends the header section at its first line that is no field, puts the blank
    line there and its Received field first, and makes a lone CR a space: the milter
    never sees what eval flags."""
    data = message.encode("ascii")
    result = send_message(mail_system.postfix.port, data, SENDER, [RECIPIENT])
    assert result.accepted and result.queue_id, result
    dsn = mail_system.database_url
    assert dsn is not None
    (row,) = wait_for(lambda: [r for r in audit_rows(dsn) if r["queue_id"] == result.queue_id])
    assert flag not in row["flags"] and "malformed" not in row["flags"]
    envelope = Envelope(sender=SENDER, recipients=(RECIPIENT,), client_ip="127.0.0.1")
    assert flag in evaluate_message(load_policy_set([POLICY_DIR]), data, envelope).flags
    doc = " ".join(DOC.read_text(encoding="utf-8").split())
    assert "the milter never sees `no_headers` or `missing_header_separator`" in doc
    assert "Nor does it see `bare_cr` where Postfix has `cleanup_replace_stray_cr_lf`" in doc
