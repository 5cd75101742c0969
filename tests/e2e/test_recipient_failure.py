"""An internal error at one RCPT TO, through a real Postfix: SMTP lets the client go on
with its other recipients, and so does the milter. It ended the transaction there: each
later RCPT, DATA and end of message failed again ("message callback outside a
transaction", a traceback apiece), and all of them were tempfailed."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest

from tests.fixtures.postfix import has_header

from . import messages
from .conftest import MailSystem, faulty, mail_system_for
from .messages import SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

# Loaded by the milter process as it starts (sitecustomize): the recipient broken@ makes
# the RCPT callback fail, as a fault of ours would.
FAULT = """\
import postwarden_milter.session as session

_add = session.Transaction.add_recipient


def add_recipient(self, as_given, params, limit):
    if as_given.startswith("<broken@"):
        raise RuntimeError("a fault at RCPT")
    return _add(self, as_given, params, limit)


session.Transaction.add_recipient = add_recipient
"""
RECIPIENTS = ("first@example.net", "broken@example.net", "last@example.net")


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return faulty(Path(tmp_path_factory.mktemp("faults")), FAULT)


def _send(system: MailSystem) -> tuple[list[int], int, str]:
    """The message to RECIPIENTS: the replies to RCPT TO and DATA, and its Message-ID."""
    sample = messages.clean()
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=60) as smtp:
        smtp.ehlo("client.postwarden.test")
        assert smtp.mail(SENDER)[0] == 250
        codes = [smtp.rcpt(recipient)[0] for recipient in RECIPIENTS]
        code = smtp.data(sample.data)[0]
    return codes, code, sample.message_id


@pytest.mark.parametrize(("action", "reply"), [("tempfail", "451 4.3.0"),
                                               ("reject", "550 5.3.0")])
def test_a_failure_at_one_rcpt_refuses_that_recipient_alone(
        database_url: str, faults: dict[str, str], action: str, reply: str) -> None:
    env = {**faults, "POSTWARDEN_FAIL_ACTION": action}
    with mail_system_for(database_url, env=env) as system:
        codes, data, message_id = _send(system)
        assert (codes, data) == ([250, int(reply[:3]), 250], 250)
        delivered = system.capture.wait_for_message(has_header("Message-ID", message_id))
        assert delivered.rcpt_tos == (RECIPIENTS[0], RECIPIENTS[2])
        row = system.audit_row(message_id)
        assert (row["action"], row["recipients"]) == ("accept", [RECIPIENTS[0], RECIPIENTS[2]])
        (refused,) = [c for c in json.loads(row["changes"]) if c["kind"] == "recipient_refused"]
        assert refused["recipient"] == RECIPIENTS[1]
        assert refused["reply"].startswith(reply)
        log = system.milter.log()
        assert log.count("Traceback") == 1, log  # the fault's own
        assert f"envrcpt: answering {reply}" in log


def test_with_fail_action_accept_the_message_goes_unchecked_to_all(
        database_url: str, faults: dict[str, str]) -> None:
    """As at any other step: Postfix asks the milter nothing more of the message."""
    env = {**faults, "POSTWARDEN_FAIL_ACTION": "accept"}
    with mail_system_for(database_url, env=env) as system:
        codes, data, message_id = _send(system)
        assert (codes, data) == ([250, 250, 250], 250)
        delivered = system.capture.wait_for_message(has_header("Message-ID", message_id))
        assert sorted(delivered.rcpt_tos) == sorted(RECIPIENTS)
        assert system.milter.log().count("Traceback") == 1
