"""Failures around the milter: it dies (Postfix must defer, never accept unchecked), or
Postgres goes away (mail keeps flowing, every audit row arrives once it is back).

Each test builds its own mail system: these tests break it on purpose.
"""

from __future__ import annotations

import asyncio
import re
import smtplib

import pytest

from postwarden_store import migrate_database
from tests.fixtures.postfix import SmtpResult, has_header, send_message, wait_for
from tests.fixtures.postgres import PostgresCluster

from . import messages
from .conftest import audit_rows, mail_system_for
from .messages import RECIPIENT, SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def _data_reply(smtp: smtplib.SMTP, data: bytes) -> SmtpResult:
    try:
        code, text = smtp.data(data)
    except smtplib.SMTPDataError as exc:
        return SmtpResult(exc.smtp_code, str(exc.smtp_error), "data")
    return SmtpResult(code, str(text), "data")


def test_killed_milter_makes_postfix_defer(database_url: str) -> None:
    with mail_system_for(database_url) as system:
        before = messages.clean()
        assert send_message(system.postfix.port, before.data, SENDER, [RECIPIENT]).accepted

        # A transaction under way when the milter dies: its end of data is deferred.
        during = messages.clean()
        with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=60) as smtp:
            smtp.ehlo("client.postwarden.test")
            assert smtp.mail(SENDER)[0] == 250
            assert smtp.rcpt(RECIPIENT)[0] == 250
            system.milter.kill()
            mid = _data_reply(smtp, during.data)
        assert 400 <= mid.code < 500, mid

        # New connections while it is down: deferred as well.
        after = messages.clean()
        result = send_message(system.postfix.port, after.data, SENDER, [RECIPIENT])
        assert 400 <= result.code < 500, result
        assert not result.accepted

        system.postfix.wait_for_log(
            rf"warning: connect to Milter service {re.escape(system.milter.postfix_spec)}: "
            r"Connection refused"
        )
        assert system.capture.wait_for_message(has_header("Message-ID", before.message_id))
        delivered = [m.data for m in system.capture.messages]
        for sample in (during, after):
            assert not any(sample.message_id.encode() in data for data in delivered)
        assert not system.postfix.queue()  # nothing slipped into the queue either


def test_postgres_outage_loses_no_audit_row() -> None:
    cluster = PostgresCluster()
    try:
        cluster.start()
        dsn = cluster.admin_dsn
        asyncio.run(migrate_database(dsn))
        with mail_system_for(dsn) as system:
            port = system.postfix.port
            first = messages.clean()
            assert send_message(port, first.data, SENDER, [RECIPIENT]).accepted
            system.audit_row(first.message_id)

            cluster.stop()
            during = [messages.clean(subject=f"during outage {n}") for n in range(5)]
            for sample in during:
                result = send_message(port, sample.data, SENDER, [RECIPIENT])
                assert result.accepted, result  # mail never waits on the database
            for sample in during:
                system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
            # The events went to the durable spool while Postgres was away.
            wait_for(lambda: any(p.stat().st_size for p in system.milter.spool_files()), 30)

            cluster.start()
            last = messages.clean(subject="after outage")
            assert send_message(port, last.data, SENDER, [RECIPIENT]).accepted

            expected = {s.message_id for s in (first, *during, last)}
            wait_for(lambda: {r["message_id"] for r in audit_rows(dsn)} >= expected, 90)
            rows = audit_rows(dsn)
            assert sorted(r["message_id"] for r in rows) == sorted(expected)  # once each
            for sample in (first, *during, last):
                row = system.audit_row(sample.message_id)
                assert row["queue_id"] == system.queue_id_of(sample.message_id)
    finally:
        cluster.destroy()
