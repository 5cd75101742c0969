"""What docs/api.md says of the verdict ``aborted``, through the real Postfix: a message
Postfix's header_checks DISCARD or REJECT, or its message_size_limit refuses, never
reaches the milter's end of message, so its row says aborted (with no reply), though
the client of the DISCARD was answered 250 and holds the message as delivered."""

from __future__ import annotations

import smtplib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import wait_for

from . import messages
from .conftest import MailSystem, audit_rows, mail_system_for
from .messages import RECIPIENT

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

CHECKS = "/^Subject: discard-me/ DISCARD\n/^Subject: reject-me/ REJECT no thanks\n"
SIZE_LIMIT = 20_000


@pytest.fixture(scope="module")
def system(database_url: str) -> Iterator[MailSystem]:
    # Not under pytest's 0700 tmp: Postfix's cleanup reads it as the postfix user.
    with tempfile.TemporaryDirectory(prefix="postwarden-checks-") as directory:
        Path(directory).chmod(0o755)
        checks = Path(directory) / "header_checks"
        checks.write_text(CHECKS)
        checks.chmod(0o644)
        with mail_system_for(database_url, main={
                "header_checks": f"regexp:{checks}",
                "message_size_limit": str(SIZE_LIMIT)}) as mail_system:
            yield mail_system


def _send(system: MailSystem, sender: str, sample: messages.Sample) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=60) as smtp:
        smtp.ehlo("client.postwarden.test")
        smtp.mail(sender)
        smtp.rcpt(RECIPIENT)
        code, reply = smtp.data(sample.data)
    return code, reply


def _row(system: MailSystem, sender: str) -> dict[str, object]:
    """By its sender: the milter may have seen none of its headers."""
    dsn = system.database_url
    assert dsn is not None
    (row,) = wait_for(lambda: [r for r in audit_rows(dsn) if r["sender"] == sender], 20)
    return row


@pytest.mark.parametrize(("sample", "answered"), [
    pytest.param(messages.clean("discard-me"), 250, id="header_checks-discard"),
    pytest.param(messages.clean("reject-me"), 550, id="header_checks-reject"),
    pytest.param(messages.big_text(SIZE_LIMIT * 2, "too big"), 552, id="message_size_limit"),
])
def test_a_message_postfix_ends_before_our_end_of_message_is_audited_aborted(
    system: MailSystem, sample: messages.Sample, answered: int,
    request: pytest.FixtureRequest,
) -> None:
    sender = f"{request.node.callspec.id}@example.org"
    code, _ = _send(system, sender, sample)
    assert code == answered
    row = _row(system, sender)
    assert (row["action"], row["smtp_reply"], list(row["rules"])) == ("aborted", None, [])
