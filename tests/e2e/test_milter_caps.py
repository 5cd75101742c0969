"""The milter's own caps through a real Postfix: header deletions past the bound get 554
before Postfix's cleanup has to search its queue file for each (unit tests:
tests/milter/test_header_deletions.py), and max_concurrency counts transactions whose
content the milter holds, so neither sessions idle after EHLO nor slow clients in DATA lock
mail out (tests/milter/test_transaction_slots.py)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.fixtures.ports import free_port
from tests.fixtures.postfix import has_header, send_message, wait_for
from tests.fixtures.scrape import scrape

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import RECIPIENT, SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

MAX_CONCURRENCY = 2
IDLE = 80  # Postfix allows 100 smtpd processes per service by default


@pytest.fixture(scope="module")
def system(database_url: str) -> Iterator[tuple[MailSystem, int]]:
    metrics_port = free_port()
    env = {"POSTWARDEN_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
           "POSTWARDEN_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    with mail_system_for(database_url, env=env) as started:
        yield started, metrics_port


def test_500_copies_of_our_id_header_get_554(system: tuple[MailSystem, int]) -> None:
    mail, _ = system
    sample = messages.clean()
    data = sample.data.replace(b"Subject:", b"X-Postwarden-Id: forged\r\n" * 500 + b"Subject:", 1)
    result = send_message(mail.postfix.port, data, SENDER, [RECIPIENT])
    assert (result.code, result.stage) == (554, "data"), result
    assert "5.6.0 Message structure too complex" in result.text
    row = mail.audit_row(sample.message_id)
    assert row["action"] == "reject" and row["smtp_reply"].startswith("554 5.6.0 ")
    assert "too_many_header_deletions" in row["flags"]


def test_idle_sessions_do_not_lock_out_a_transaction(system: tuple[MailSystem, int]) -> None:
    mail, metrics_port = system
    with ExitStack() as sessions:
        for _ in range(IDLE):
            smtp = sessions.enter_context(smtplib.SMTP(
                "127.0.0.1", mail.postfix.port, local_hostname="idle.postwarden.test", timeout=30))
            assert smtp.ehlo()[0] == 250
        # Each session has its milter connection (40 times max_concurrency), none a slot.
        assert wait_for(lambda: scrape(metrics_port).get(
            ("postwarden_connections", frozenset())) == IDLE, timeout=15)
        sample = messages.clean()
        result = send_message(mail.postfix.port, sample.data, SENDER, [RECIPIENT])
        assert result.accepted, result
    assert mail.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    assert mail.audit_row(sample.message_id)["action"] == "accept"


def test_slow_clients_in_data_do_not_lock_out_a_transaction(
    system: tuple[MailSystem, int]
) -> None:
    """Clients that began DATA and send it slowly: Postfix passes no content to the
    milter until a client ends it, so they hold no slot."""
    mail, _ = system
    with ExitStack() as sessions:
        for n in range(4 * MAX_CONCURRENCY):
            smtp = smtplib.SMTP("127.0.0.1", mail.postfix.port,
                                local_hostname="slow.postwarden.test", timeout=30)
            sessions.callback(smtp.close)  # hung up in DATA: a QUIT would wait out the timeout
            assert smtp.ehlo()[0] == 250
            assert smtp.mail(SENDER)[0] == 250
            assert smtp.rcpt(RECIPIENT)[0] == 250
            assert smtp.docmd("DATA")[0] == 354
            smtp.send(f"Subject: slow {n}\r\n".encode())  # and nothing more, for now
        sample = messages.clean()
        result = send_message(mail.postfix.port, sample.data, SENDER, [RECIPIENT])
        assert result.accepted, result
    assert mail.capture.wait_for_message(has_header("Message-ID", sample.message_id))
