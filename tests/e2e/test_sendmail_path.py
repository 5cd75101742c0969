"""Mail submitted with sendmail(1) (cron, local programs) through the real Postfix and the
real milter, as contrib/postfix sets it up: ``non_smtpd_milters = $smtpd_milters``.

sendmail hands the message to postdrop (the maildrop queue), pickup to cleanup, and
cleanup to the milter. There is no SMTP client: Postfix makes a connection up
(``localhost [127.0.0.1]``, HELO ``localhost``), and nobody is waiting for an answer,
so a refusal becomes a bounce to the sender and a tempfail leaves the message in
the maildrop queue for pickup's next pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.postfix import (
    LOOPBACK,
    LOOPBACK_V6,
    CapturedMessage,
    has_header,
    wait_for,
)

from . import messages
from .conftest import MailSystem, audit_rows, faulty, mail_system_for
from .messages import RECIPIENT, SENDER, Delivered, Sample
from .test_apply_recipients import SMTPUTF8_MACRO
from .test_postfix_milter import _audited, _changes

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

NON_SMTPD = {"non_smtpd_milters": "$smtpd_milters"}  # as contrib/postfix/main.cf.snippet


@pytest.fixture(scope="module")
def system(database_url: str) -> Iterator[MailSystem]:
    with mail_system_for(database_url, unix_socket=True, main=NON_SMTPD) as mail_system:
        yield mail_system


def _submit(system: MailSystem, sample: Sample) -> None:
    system.postfix.sendmail(sample.data, SENDER, [RECIPIENT])


def _audited_local(system: MailSystem, sample: Sample, action: str) -> dict[str, Any]:
    """The audit row, with the client Postfix made up for a local submission."""
    row = _audited(system, sample, action)
    assert (row["client_name"], row["helo"], row["auth_user"]) == ("localhost", "localhost", None)
    return row


def _delivered_to_recipient(system: MailSystem, sample: Sample) -> list[CapturedMessage]:
    return [m for m in system.capture.messages
            if m.rcpt_tos == (RECIPIENT,) and has_header("Message-ID", sample.message_id)(m)]


def test_clean_message_is_delivered_unchanged_and_audited(system: MailSystem) -> None:
    sample = messages.clean()
    _submit(system, sample)
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))

    queue_id = system.queue_id_of(sample.message_id)
    system.postfix.wait_for_log(rf"{queue_id}: uid=0 from=<{re.escape(SENDER)}>")  # pickup's
    got, sent = Delivered.parse(delivered.data), Delivered.parse(sample.data)
    received, id_field = got.fields[0], got.fields[-1]
    assert re.fullmatch(rb"Received: by mx\.postwarden\.test \(Postfix, from userid 0\)\r\n"
                        rb"\tid " + queue_id.encode() + rb"; [^\r\n]+\r\n", received)
    assert got.names()[-1] == "x-postwarden-id"
    assert delivered.data == received + b"".join(sent.fields) + id_field + b"\r\n" + sent.body
    assert (delivered.mail_from, delivered.rcpt_tos) == (SENDER, (RECIPIENT,))

    row = _audited_local(system, sample, "accept")
    assert row["message_uid"] == got.header("X-Postwarden-Id")
    assert _changes(row) == []


def test_html_message_is_sanitized(system: MailSystem) -> None:
    sample = messages.hostile_html()
    _submit(system, sample)
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    body = Delivered.parse(delivered.data).body.lower()
    for hostile in (b"<script", b"document.cookie", b"javascript:", b"onclick", b"onerror"):
        assert hostile not in body
    assert b"see below" in body

    row = _audited_local(system, sample, "accept")
    assert [c["kind"] for c in _changes(row)] == ["html_sanitized"]


def test_a_refused_message_bounces_to_its_sender(system: MailSystem) -> None:
    # No SMTP client hears the 550: cleanup bounces the message, and sendmail has
    # long since exited 0. The bounce returns the headers only (no attachment), and
    # does not pass the milter itself (internal_mail_filter_classes is empty).
    sample = messages.executable()
    _submit(system, sample)
    queue_id = system.queue_id_of(sample.message_id)
    system.postfix.wait_for_log(
        rf"{queue_id}: milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: "
        r"5\.7\.1 Executable attachments are not accepted;")
    system.postfix.wait_for_log(rf"{queue_id}: to=<{re.escape(RECIPIENT)}>, relay=none, .*"
                                r"dsn=5\.7\.1, status=bounced")
    bounce = system.capture.wait_for_message(
        lambda m: m.mail_from == "<>" and sample.message_id.encode() in m.data)
    assert bounce.rcpt_tos == (SENDER,)
    assert b"Diagnostic-Code: X-Postfix; Executable attachments are not accepted" in bounce.data
    assert b"Content-Type: text/rfc822-headers" in bounce.data
    assert b"invoice.exe" not in bounce.data and b"TVqQ" not in bounce.data
    bounce_id = system.postfix.wait_for_log(
        rf"{queue_id}: sender non-delivery notification: (\w+)").group(1)
    assert bounce_id not in system.milter.log()
    assert not _delivered_to_recipient(system, sample)

    row = _audited_local(system, sample, "reject")
    assert row["smtp_reply"] == "550 5.7.1 Executable attachments are not accepted"
    assert row["rules"] == ["block-executables"]


def test_a_quarantined_message_lands_in_the_hold_queue(system: MailSystem) -> None:
    sample = messages.clean(subject="[quarantine-me] payroll")
    _submit(system, sample)
    queue_id = system.queue_id_of(sample.message_id)
    system.postfix.wait_for_log(rf"{queue_id}: milter-hold: END-OF-MESSAGE from localhost")
    assert queue_id in system.postfix.held_queue_ids()
    assert not _delivered_to_recipient(system, sample)
    assert _audited_local(system, sample, "quarantine")["rules"] == ["quarantine-marked"]


def test_with_the_milter_down_mail_waits_in_the_maildrop_queue(database_url: str) -> None:
    # milter_default_action = tempfail: cleanup refuses the made-up connection, pickup
    # leaves the file in maildrop and takes it again on its next pass (sendmail exited 0).
    with mail_system_for(database_url, main=NON_SMTPD) as down:
        down.milter.kill()
        sample = messages.clean(subject="while the milter is down")
        _submit(down, sample)
        down.postfix.wait_for_log(
            r"milter-reject: CONNECT from localhost\[127\.0\.0\.1\]: 4\.7\.1 Service unavailable"
            rf" - try again later; from=<{re.escape(SENDER)}>")
        waiting = down.postfix.queue()
        assert [(m["queue_name"], m["sender"]) for m in waiting] == [("maildrop", SENDER)]
        assert not down.capture.messages
        assert f"message-id={sample.message_id}" not in down.postfix.log()

        down.milter.start()
        down.postfix.kick_pickup()
        delivered = down.capture.wait_for_message(has_header("Message-ID", sample.message_id))
        assert Delivered.parse(delivered.data).names()[-1] == "x-postwarden-id"
        row = _audited_local(down, sample, "accept")
        assert row["queue_id"] != waiting[0]["queue_id"]  # pickup gives each pass a new id
        wait_for(lambda: not down.postfix.queue())


@pytest.mark.parametrize("host", [LOOPBACK, LOOPBACK_V6])
def test_past_max_recipients_a_local_submission_bounces_whole(
    database_url: str, tmp_path: Path, host: str,
) -> None:
    # Postfix cannot refuse one recipient of a local submission: refused at RCPT, the
    # message was deferred ("milter configuration error") and pickup took it again
    # every pass, forever, each pass adding an aborted row. An IPv6-only Postfix
    # makes its connection up from ::1, not 127.0.0.1: taken for an SMTP client's, so.
    (tmp_path / "limits.yaml").write_text("version: 1\nname: limits\nlimits:\n"
                                          "  max_recipients: 2\nrules:\n  - name: cron\n"
                                          "    when: {subject: '^to '}\n"
                                          "    then: {notify: [soc]}\n")
    recipients = ["a@example.net", "b@example.net", "c@example.net"]
    with mail_system_for(database_url, policy_dir=tmp_path, unix_socket=True, main=NON_SMTPD,
                         host=host) as local:
        sample = messages.clean(subject="to three")
        local.postfix.sendmail(sample.data, SENDER, recipients)
        queue_id = local.queue_id_of(sample.message_id)
        local.postfix.wait_for_log(rf"{queue_id}: milter-reject: END-OF-MESSAGE from localhost"
                                   rf"\[{re.escape(host)}\]: 5\.5\.3 Too many recipients;")
        bounce = local.capture.wait_for_message(
            lambda m: m.mail_from == "<>" and sample.message_id.encode() in m.data)
        assert bounce.rcpt_tos == (SENDER,)
        assert bounce.data.count(b"Status: 5.5.3\r\n") == len(recipients)
        row = local.audit_row(sample.message_id)
        assert (row["queue_id"], row["action"], row["smtp_reply"]) == (
            queue_id, "reject", "550 5.5.3 Too many recipients")
        assert list(row["recipients"]) == recipients
        # Evaluated before it was refused: the rule's notify is raised, as for any verdict.
        assert (row["rules"], row["notify"]) == (["cron", "limit:max_recipients"], ["soc"])
        assert "milter configuration error" not in local.postfix.log()

        within = messages.clean(subject="to two")
        local.postfix.sendmail(within.data, SENDER, recipients[:2])
        delivered = local.capture.wait_for_message(has_header("Message-ID", within.message_id))
        assert delivered.rcpt_tos == tuple(recipients[:2])
        assert local.audit_row(within.message_id)["action"] == "accept"
        wait_for(lambda: not local.postfix.queue())


@pytest.mark.parametrize(("macro", "delivered"), [
    pytest.param(SMTPUTF8_MACRO, True, id="with-the-snippets-macro"),
    pytest.param({}, False, id="without"),
])
def test_a_local_recipient_repeated_in_another_unicode_case_counts_as_postfix_keeps_it(
    database_url: str, tmp_path: Path, macro: dict[str, str], delivered: bool,
) -> None:
    # cleanup's made-up MAIL FROM never says SMTPUTF8, yet with smtputf8_enable (its
    # default) cleanup keeps one of JÖRG@ and jörg@: the milter counted three recipients
    # past a limit of two, and bounced mail Postfix delivers to two. Told by the macro,
    # it counts as cleanup does; without, it still counts both, never one too few.
    (tmp_path / "limits.yaml").write_text("version: 1\nname: limits\nlimits:\n"
                                          "  max_recipients: 2\n")
    recipients = ["j\u00f6rg@example.net", "J\u00d6RG@example.net", "bob@example.net"]
    with mail_system_for(database_url, policy_dir=tmp_path, unix_socket=True,
                         main={**NON_SMTPD, **macro}) as local:
        sample = messages.clean(subject="to j\u00f6rg twice")
        local.postfix.sendmail(sample.data, SENDER, recipients)
        if delivered:
            message = local.capture.wait_for_message(has_header("Message-ID", sample.message_id))
            assert sorted(message.rcpt_tos) == ["bob@example.net", "j\u00f6rg@example.net"]
        else:
            local.capture.wait_for_message(
                lambda m: m.mail_from == "<>" and sample.message_id.encode() in m.data)
        row = local.audit_row(sample.message_id)
        assert row["action"] == ("accept" if delivered else "reject")
        assert list(row["recipients"]) == (recipients[::2] if delivered else recipients)


def test_requeueing_a_held_message_releases_it_unchecked(system: MailSystem) -> None:
    # postsuper -r goes through pickup and cleanup again, but Postfix skips the milters
    # for mail it requeued itself: like -H, it releases a quarantined message.
    sample = messages.clean(subject="[quarantine-me] requeued")
    _submit(system, sample)
    queue_id = system.queue_id_of(sample.message_id)
    wait_for(lambda: queue_id in system.postfix.held_queue_ids())
    row = _audited_local(system, sample, "quarantine")

    system.postfix.requeue(queue_id)
    system.postfix.kick_pickup()
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    got = Delivered.parse(delivered.data)
    assert got.header("X-Postwarden-Id") == row["message_uid"]
    requeued = re.search(rb"\tid (\w+);", got.fields[0])
    assert requeued is not None and requeued.group(1).decode() != queue_id
    assert requeued.group(1).decode() not in system.milter.log()  # the milter never saw it


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_local_submission_tempfailed_pass_after_pass_is_held(
    database_url: str, tmp_path: Path, processes: str,
) -> None:
    # pickup retries a tempfailed maildrop file at each pass, with no queue lifetime:
    # once forever, an audit row a pass. Past local_retry_passes the next pass is held,
    # whichever worker takes each pass, and though the milter restarted in between.
    (tmp_path / "defer.yaml").write_text("version: 1\nname: defer\nrules:\n"
                                         "  - name: defer-all\n    when: {subject: '^defer'}\n"
                                         "    then: tempfail\n")
    env = {"POSTWARDEN_LOCAL_RETRY_PASSES": "2", "POSTWARDEN_PROCESSES": processes}
    with mail_system_for(database_url, policy_dir=tmp_path, unix_socket=True, main=NON_SMTPD,
                         env=env) as local:
        sample = messages.clean(subject="defer me")
        _submit(local, sample)
        deferred = r"milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 4\.7\.1 "
        for passes in (1, 2):
            wait_for(lambda n=passes: len(re.findall(deferred, local.postfix.log())) == n)
            assert [m["queue_name"] for m in local.postfix.queue()] == ["maildrop"]
            if passes == 1:
                local.milter.stop()
                local.milter.start()
            local.postfix.kick_pickup()
        held = local.postfix.wait_for_log(
            r"(\w+): milter-hold: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]").group(1)
        assert local.postfix.held_queue_ids() == {held}

        def three_rows() -> list[dict[str, Any]] | None:
            rows = sorted(audit_rows(database_url, sample.message_id), key=lambda r: r["time"])
            return rows if len(rows) == 3 else None

        rows = wait_for(three_rows)
        assert [r["action"] for r in rows] == ["tempfail", "tempfail", "quarantine"]
        assert rows[-1]["queue_id"] == held and "retries_exhausted" in rows[-1]["flags"]
        assert list(rows[-1]["rules"]) == ["defer-all"]
        assert "tempfailed 2 times from the maildrop queue: held instead" in local.milter.log()
        assert not _delivered_to_recipient(local, sample)


# Loaded by the milter as it starts (conftest.faulty): MAIL FROM fails before its
# transaction opens, as a fault of ours there would.
MAIL_FAULT = """\
import postwarden_milter.handler as handler


def esmtp_param(params, wanted):
    raise RuntimeError("a fault at MAIL")


handler.esmtp_param = esmtp_param
"""
# And the HELO callback before it: MAIL, then run only to keep what it can, failed
# unseen and kept nothing.
HELO_FAULT = """
@handler.guarded("helo", replies=False)
def helo(self, name):
    raise RuntimeError("a fault at HELO")


handler.ConnectionHandler.helo = helo
"""
# Or end of message fails applying a verdict that lets the message in.
APPLY_FAULT = """\
import postwarden_milter.handler as handler


def apply_verdict(actions, verdict, edits):
    raise RuntimeError("a fault applying the verdict")


handler.apply_verdict = apply_verdict
"""
# Or it cannot build the verdict's audit row (a fault in the verdict's part).
VERDICT_ROW_FAULT = """\
import postwarden_milter.events as events


def recipients_to_delete(verdict, recipients):
    raise RuntimeError("a fault in the verdict's audit row")


events.recipients_to_delete = recipients_to_delete
"""


@pytest.mark.parametrize("fault", [pytest.param(MAIL_FAULT, id="mail"),
                                   pytest.param(MAIL_FAULT + HELO_FAULT, id="helo-then-mail"),
                                   pytest.param(APPLY_FAULT, id="apply"),
                                   pytest.param(VERDICT_ROW_FAULT, id="verdict-row")])
def test_a_local_submission_whose_failures_went_uncounted_is_held_past_its_passes(
    database_url: str, tmp_path: Path, fault: str,
) -> None:
    """Its MAIL callback failed before it opened the transaction (nothing of the message
    was kept), or its end of message after a verdict that lets it in had started its
    passes again, or once the verdict's audit row had forgotten the transaction: no pass
    was counted, and pickup retried it forever, an error a pass (with no row, that last)."""
    env = {**faulty(tmp_path, fault), "POSTWARDEN_LOCAL_RETRY_PASSES": "2"}
    with mail_system_for(database_url, unix_socket=True, main=NON_SMTPD, env=env) as local:
        sample = messages.clean()
        _submit(local, sample)
        deferred = r"milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 4\.3\.0 "
        for passes in (1, 2):
            wait_for(lambda n=passes: len(re.findall(deferred, local.postfix.log())) == n)
            local.postfix.kick_pickup()
        held = local.postfix.wait_for_log(
            r"(\w+): milter-hold: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]").group(1)
        assert local.postfix.held_queue_ids() == {held}
        rows = wait_for(lambda: len(rows := audit_rows(database_url, sample.message_id)) == 3
                        and sorted(rows, key=lambda r: r["time"]))
        assert [r["action"] for r in rows] == ["error", "error", "quarantine"]
        assert rows[-1]["queue_id"] == held and "retries_exhausted" in rows[-1]["flags"]
        assert rows[-1]["sender"] == SENDER and list(rows[-1]["recipients"]) == [RECIPIENT]
