"""The milter's callbacks, driven through pymilter's TestCtx with a real policy set."""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import threading
import time
from typing import Any

import Milter
import pytest

from postwarden_milter import decider, events, handler, session
from postwarden_milter.logcontext import MessageContextFilter
from postwarden_milter.reload import PolicyHolder
from postwarden_milter.session import Slots
from postwarden_milter.settings import FailAction
from postwarden_policies import engine, load_policy_set_from_sources
from postwarden_policies.sanitize import DEADLINE
from tests.milter.conftest import Ctx, Harness

CLEAN = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Lunch\r\n"
    b"Message-ID: <lunch-1@example.org>\r\n"
    b"X-Folded: first\r\n second\r\n"
    b"\r\n"
    b"See you at noon.\r\n"
)


def message(subject: str, body: bytes = b"Hello.\r\n", message_id: str = "<m1@example.org>",
            extra: bytes = b"") -> bytes:
    return (
        b"From: alice@example.org\r\nTo: bob@example.net\r\n"
        + f"Subject: {subject}\r\nMessage-ID: {message_id}\r\n".encode()
        + extra + b"\r\n" + body
    )


EXE = message(
    "invoice",
    extra=b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n',
    body=(
        b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="run.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAA\r\n--b1--\r\n"
    ),
)


def test_clean_message_passes_with_our_id_and_an_audit_row(harness: Harness) -> None:
    ctx = harness.connect(queue_id="4QCLEAN")
    assert ctx.send(CLEAN, recipients=("bob@example.net", "carol@example.net")) == Milter.CONTINUE
    assert ctx.replaced_body is None  # untouched body is never replaced
    [event] = harness.audit.events
    assert ctx.header_edits == [("add", "X-Postwarden-Id", " " + event.message_uid)]
    assert event.action == "accept" and event.smtp_reply is None
    assert event.queue_id == "4QCLEAN"
    assert event.sender == "alice@example.org"
    assert event.recipients == ("bob@example.net", "carol@example.net")
    assert (event.client_address, event.client_name) == ("192.0.2.10", "client.example")
    assert event.helo == "helo.example"
    assert event.subject == "Lunch" and event.message_id == "<lunch-1@example.org>"
    assert event.size == len(CLEAN)  # rebuilt byte for byte, folded header included
    assert event.policy_hash == harness.services.policies.current.content_hash
    assert event.instance == "mx-test"


def test_reject_sends_policy_reply(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(EXE) == Milter.REJECT
    assert ctx._reply == ("550", "5.7.1", "Message rejected by policy")
    [event] = harness.audit.events
    assert event.action == "reject" and event.rules == ("no-exe",)
    assert event.smtp_reply == "550 5.7.1 Message rejected by policy"
    assert harness.metrics.registry.get_sample_value(
        "postwarden_rule_matches_total", {"rule": "no-exe"}) == 1


def test_quarantine_and_header_edit(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(message("please HOLD me")) == Milter.CONTINUE
    assert ctx.quarantined == "held for review"
    ctx2 = harness.connect()
    assert ctx2.send(message("tag me", message_id="<m2@example.org>")) == Milter.CONTINUE
    assert ("add", "X-Tagged", " yes") in ctx2.header_edits
    assert [e.action for e in harness.audit.events] == ["quarantine", "accept"]


def test_oversized_body_is_refused_at_end_of_message(harness: Harness) -> None:
    ctx = harness.connect(queue_id="4QBIG")
    big = message("big", body=b"x" * 76 + b"\r\n") + b"y" * 78 * 400  # past 20 000 bytes
    assert ctx.send(big) == Milter.REJECT
    assert ctx._reply == ("552", "5.3.4", "Message size exceeds fixed limit")
    [event] = harness.audit.events
    assert event.action == "reject"
    assert (event.smtp_reply or "").startswith("552 5.3.4")
    assert event.subject == "big" and event.message_id == "<m1@example.org>"
    assert event.queue_id == "4QBIG"
    assert event.size > 20000
    # As eval and `test` name it: a search by that rule found none of these refusals.
    assert event.rules == ("limit:max_message_bytes",)
    assert harness.metrics.registry.get_sample_value(
        "postwarden_rule_matches_total", {"rule": "limit:max_message_bytes"}) == 1


def _sized(size: int) -> bytes:
    head = message("at the limit", body=b"")
    return head + b"x" * (size - len(head))


# What our id header adds: "X-Postwarden-Id: " + a 32-digit uid + CRLF.
ID_LINE = len(b"X-Postwarden-Id: ") + 32 + 2


def test_a_message_our_id_header_takes_past_the_limit_is_refused(harness: Harness) -> None:
    # It went on past max_message_bytes (20 000), and Postfix's cleanup refused it
    # ("message file too big") after its audit row said accept.
    ctx = harness.connect()
    assert ctx.send(_sized(20000 - ID_LINE + 1)) == Milter.REJECT
    assert ctx._reply == ("552", "5.3.4", "Message size exceeds fixed limit")
    assert ctx.header_edits == []
    [event] = harness.audit.events
    assert (event.action, event.rules) == ("reject", ("limit:max_message_bytes",))


def test_a_message_with_room_for_our_id_header_goes_on(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(_sized(20000 - ID_LINE)) == Milter.CONTINUE
    [(_, name, value)] = ctx.header_edits
    assert len(f"{name}:{value}\r\n") == ID_LINE
    harness.configure(id_header="")  # nothing added: the whole limit is the message's
    assert harness.connect().send(_sized(20000)) == Milter.CONTINUE
    assert [e.action for e in harness.audit.events] == ["accept", "accept"]


def test_headers_past_the_limit_are_refused_with_a_row_naming_the_message(
    harness: Harness,
) -> None:
    # They were all kept, and all parsed for the refusal's audit row (20 MB of headers
    # took 2.45 s on libmilter's thread): now neither (tests/milter/test_session.py).
    ctx = harness.connect(queue_id="4QHDRS")
    headers = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 990) for n in range(2_000))
    assert ctx.send(message("many headers", extra=headers)) == Milter.REJECT
    assert ctx._reply == ("552", "5.3.4", "Message size exceeds fixed limit")
    [event] = harness.audit.events
    assert event.subject == "many headers" and event.message_id == "<m1@example.org>"
    assert event.size == len(message("many headers", extra=headers))


@pytest.mark.parametrize("fail_action", [FailAction.TEMPFAIL, FailAction.ACCEPT])
def test_a_from_header_python_cannot_parse_still_gets_the_policy_verdict(
    harness: Harness, fail_action: FailAction
) -> None:
    # The email package's address parser raises on this; were that an internal
    # error, fail_action accept would deliver the executable unchecked.
    harness.configure(fail_action=fail_action)
    ctx = harness.connect()
    assert ctx.send(EXE.replace(b"From: alice@example.org", b"From: Mallory <mallory@")) \
        == Milter.REJECT
    assert harness.audit.events[-1].rules == ("no-exe",)


def test_declared_size_is_refused_at_mail_from(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx._envfrom("<alice@example.org>", "SIZE=999999") == Milter.REJECT
    assert ctx._reply[:2] == ("552", "5.3.4")
    assert harness.audit.events[-1].rules == ("limit:max_message_bytes",)


def test_recipients_past_the_limit_get_452(harness: Harness) -> None:
    ctx = harness.connect()
    rcpts = tuple(f"r{n}@example.net" for n in range(5))
    assert ctx.send(CLEAN, recipients=rcpts) == Milter.CONTINUE
    assert ctx._reply == ("452", "4.5.3", "Too many recipients")
    [event] = harness.audit.events
    assert event.recipients == rcpts[:3]


def test_several_messages_per_connection_and_abort(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(CLEAN) == Milter.CONTINUE
    assert ctx.send(message("second", message_id="<m3@example.org>")) == Milter.CONTINUE
    assert ctx._envfrom("<carol@example.org>") == Milter.CONTINUE
    assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
    ctx._abort()
    actions = [(e.action, e.sender) for e in harness.audit.events]
    assert actions == [("accept", "alice@example.org"), ("accept", "alice@example.org"),
                       ("aborted", "carol@example.org")]
    uids = {e.message_uid for e in harness.audit.events}
    assert len(uids) == 3


def _headers_only(ctx: Ctx, sender: str) -> None:
    """A transaction that got as far as its headers (and a body chunk), no further."""
    assert ctx._envfrom(f"<{sender}>") == Milter.CONTINUE
    assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
    for name, value in (("From", " Alice <alice@example.org>"), ("Subject", " Lunch"),
                        ("Message-ID", " <lunch-2@example.org>")):
        ctx._header(name, value)
    ctx._eoh()
    ctx._priv.body(b"See you")


def test_the_row_of_an_aborted_transaction_names_the_message(harness: Harness) -> None:
    ctx = harness.connect(queue_id="4QABORT")
    _headers_only(ctx, "alice@example.org")
    ctx._priv.abort()  # RSET, another milter refused, ... (TestCtx._abort closes too)
    _headers_only(ctx, "carol@example.org")
    assert ctx._envfrom("<dave@example.org>") == Milter.CONTINUE  # a new MAIL FROM, no abort
    rows = [(e.action, e.sender, e.header_from, e.subject, e.message_id)
            for e in harness.audit.events]
    assert rows == [
        ("aborted", "alice@example.org", "alice@example.org", "Lunch", "<lunch-2@example.org>"),
        ("aborted", "carol@example.org", "alice@example.org", "Lunch", "<lunch-2@example.org>"),
    ]


def test_the_row_of_an_aborted_transaction_says_nothing_of_the_body_it_lacks(
    harness: Harness,
) -> None:
    """Parsed alone, a multipart header has an empty body with no boundary: flags
    (empty_body, missing_boundary, malformed) an admin searching the audit log for
    broken mail would find on every aborted message. What the header shows stays."""
    ctx = harness.connect(queue_id="4QABORT")
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
    for name, value in (("From", " Alice <alice@example.org>"), ("Subject", " One"),
                        ("Subject", " Two"),
                        ("Content-Type", ' multipart/mixed; boundary="b"')):
        ctx._header(name, value)
    ctx._priv.abort()
    [event] = harness.audit.events
    assert event.action == "aborted"
    assert event.flags == ("duplicate_header", "malformed")  # two Subjects: the header's own


def test_a_failure_in_a_step_postfix_does_not_wait_on_counts_though_nothing_answers_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body chunk the milter cannot keep (its temporary file on a full filesystem) is
    answered at the next step that replies: it was counted only then, so not at all
    when the client gave up first, though its traceback was logged."""
    def full(*_args: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(session.Transaction, "add_body", full)

    def errors() -> float | None:
        return harness.metrics.registry.get_sample_value(
            "postwarden_errors_total", {"kind": "body"})

    ctx = harness.connect(queue_id="4QFULL")
    _headers_only(ctx, "alice@example.org")
    ctx._priv.abort()
    assert [e.action for e in harness.audit.events] == ["aborted"]
    assert errors() == 1
    assert harness.connect().send(CLEAN) == Milter.TEMPFAIL  # answered: counted once
    assert [e.action for e in harness.audit.events] == ["aborted", "error"]
    assert errors() == 2


def test_a_body_that_cannot_be_kept_is_logged_once_not_at_every_chunk(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Once a step failed the transaction is answered with the fail action whatever
    follows: each later chunk failed again, a traceback apiece (a 50 MB message on a
    full filesystem: hundreds)."""
    def full(*_args: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(session.Transaction, "add_body", full)
    ctx = harness.connect(queue_id="4QFULL")
    assert ctx.send(message("big", body=(b"x" * 70 + b"\r\n") * 4000)) == Milter.TEMPFAIL
    assert caplog.text.count("internal error in the body callback") == 1
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "body"}) == 1
    assert [e.action for e in harness.audit.events] == ["error"]


def test_redelivery_is_recognised(harness: Harness) -> None:
    first, second = harness.connect(), harness.connect()
    assert first.send(CLEAN) == Milter.CONTINUE
    assert second.send(CLEAN) == Milter.CONTINUE
    assert ("add", "X-Redelivered", " yes") in second.header_edits
    assert ("add", "X-Redelivered", " yes") not in first.header_edits
    assert [("duplicate" in e.flags) for e in harness.audit.events] == [False, True]
    other_sender = harness.connect()
    other_sender.send(CLEAN, sender="mallory@example.org")
    assert "duplicate" not in harness.audit.events[-1].flags


def test_our_own_copy_scanned_again_is_no_redelivery(harness: Harness) -> None:
    """The milter listed twice in smtpd_milters, or a content_filter re-injecting into an
    smtpd that runs it: the second pass sees the id header the first one added."""
    first, second = harness.connect(), harness.connect()
    assert first.send(CLEAN) == Milter.CONTINUE
    (added,) = [edit for edit in first.header_edits if edit[1] == "X-Postwarden-Id"]
    rescanned = CLEAN.replace(b"\r\n\r\n", f"\r\nX-Postwarden-Id:{added[2]}\r\n\r\n".encode(), 1)
    assert second.send(rescanned) == Milter.CONTINUE
    assert ("add", "X-Redelivered", " yes") not in second.header_edits
    assert [("duplicate" in e.flags) for e in harness.audit.events] == [False, False]


def test_an_id_header_the_milter_did_not_write_keeps_nothing_from_being_a_redelivery(
    harness: Harness,
) -> None:
    """A sender's made-up value, or another site's postwarden's."""
    forged = CLEAN.replace(b"\r\n\r\n", b"\r\nX-Postwarden-Id: 0123456789abcdef\r\n\r\n", 1)
    for _ in range(2):
        assert harness.connect().send(forged) == Milter.CONTINUE
    assert [("duplicate" in e.flags) for e in harness.audit.events] == [False, True]


@pytest.fixture
def on_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message is decided on the worker pool, as a large one is."""
    monkeypatch.setattr(decider, "INLINE_BYTES", 0)


@pytest.mark.usefixtures("on_the_pool")
def test_internal_error_on_the_pool_answers_the_fail_action(harness: Harness) -> None:
    broken = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    broken.shutdown()  # submit() now raises inside the eom callback
    harness.use(workers=broken)
    ctx = harness.connect(queue_id="4QERR")
    assert ctx.send(CLEAN) == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.3.0", "Temporary internal error, try again later")
    [event] = harness.audit.events
    assert event.action == "error" and event.queue_id == "4QERR"
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "eom"}) == 1


def test_deadline_answers_fail_action_reject(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decider, "INLINE_BYTES", 0)  # decided on the pool, given up there
    harness.configure(message_timeout_seconds=1e-9, fail_action=FailAction.REJECT)
    ctx = harness.connect()
    assert ctx.send(CLEAN) == Milter.REJECT
    assert ctx._reply[:2] == ("550", "5.3.0")
    assert harness.audit.events[0].action == "error"
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "timeout"}) == 1


@pytest.mark.parametrize("fail_action", list(FailAction))
def test_a_verdict_reached_here_after_the_deadline_is_answered(
    harness: Harness, caplog: pytest.LogCaptureFixture, fail_action: FailAction,
) -> None:
    """The message was checked: the fail action would deliver it unchecked (accept), or
    defer it to meet the same wait on every retry (tempfail)."""
    policy = ("version: 1\nname: p\nrules:\n  - name: lunch\n    when: {subject: Lunch}\n"
              "    then: reject\n")
    harness.use(policies=PolicyHolder(load_policy_set_from_sources([("p.yaml", policy)])))
    harness.configure(message_timeout_seconds=1e-9, fail_action=fail_action)
    ctx = harness.connect()
    assert ctx.send(CLEAN) == Milter.REJECT
    assert ctx._reply[:2] == ("550", "5.7.1")
    [event] = harness.audit.events
    assert (event.action, event.rules) == ("reject", ("lunch",))
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "timeout"}) == 0
    assert any("after the deadline" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)


@pytest.mark.parametrize("fail_action", list(FailAction))
def test_the_row_of_a_message_past_its_deadline_names_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, fail_action: FailAction,
) -> None:
    """Deferred, refused or (fail_action accept) delivered unchecked: the admin looks
    the message up by its Message-ID or From as for an aborted one."""
    monkeypatch.setattr(decider, "INLINE_BYTES", 0)
    harness.configure(message_timeout_seconds=1e-9, fail_action=fail_action)
    harness.connect(queue_id="4QLATE").send(CLEAN)
    [event] = harness.audit.events
    assert (event.action, event.queue_id, event.message_id, event.header_from,
            event.subject) == ("error", "4QLATE", "<lunch-1@example.org>",
                               "alice@example.org", "Lunch")


def test_the_row_of_a_message_whose_headers_fail_to_parse_still_ends_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What fails may be the header parse itself: the row goes without the headers."""
    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("failed")

    monkeypatch.setattr(handler, "parse_message", failing)
    monkeypatch.setattr(decider, "parse_for", failing)
    ctx = harness.connect(queue_id="4QERR")
    assert ctx.send(CLEAN) == Milter.TEMPFAIL
    assert [(e.action, e.queue_id, e.message_id) for e in harness.audit.events] == [
        ("error", "4QERR", None)]
    assert harness.services.slots.active == 0


def test_a_verdict_whose_audit_row_cannot_be_built_is_audited_as_an_error(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forgotten before its row was built, the message was answered the fail action with
    no row (and a local submission's pass went uncounted): the failure's answer now
    audits it without the verdict. Where no row can be built at all, it still ends."""
    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("failed")

    monkeypatch.setattr(events, "recipients_to_delete", failing)  # the verdict's part
    assert harness.connect(queue_id="4QROW").send(CLEAN) == Milter.TEMPFAIL
    assert [(e.action, e.queue_id, e.message_id) for e in harness.audit.events] == [
        ("error", "4QROW", "<lunch-1@example.org>")]
    monkeypatch.setattr(handler, "build_event", failing)
    with pytest.raises(RuntimeError):  # to libmilter, whose exception policy answers 451
        harness.connect().send(CLEAN)
    assert len(harness.audit.events) == 1
    assert (harness.services.slots.active, harness.services.transactions.active) == (0, 0)


def test_overload_gets_cheap_421_and_slot_is_released(harness: Harness) -> None:
    # A slot is a transaction's, from its content (tests/milter/test_transaction_slots.py).
    harness.use(slots=Slots(1))
    first = harness.connect()
    second = harness.connect(ip="192.0.2.11")
    assert first._envfrom("<alice@example.org>") == Milter.CONTINUE
    assert first._envrcpt("<bob@example.net>") == Milter.CONTINUE
    first._header("Subject", " hello")
    assert second._envfrom("<carol@example.org>") == Milter.TEMPFAIL
    assert second._reply == ("421", "4.3.2", "Service busy, try again later")
    first._close()
    third = harness.connect(ip="192.0.2.12")
    assert third._envfrom("<dave@example.org>") == Milter.CONTINUE


def test_full_spool_tempfails_new_mail(harness: Harness) -> None:
    harness.audit.refusing_mail = True
    ctx = harness.connect()
    assert ctx._envfrom("<alice@example.org>") == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.3.0", "Temporary internal error, try again later")
    assert harness.audit.events == []  # refusals must not grow a full spool
    # A refusal, counted as one: no audit event was lost (that series is for the
    # events spool_full_action=drop loses).
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "spool_full"}) == 1
    assert harness.metrics.registry.get_sample_value(
        "postwarden_audit_dropped_total", {"reason": "spool_full"}) == 0


def test_only_used_actions_are_negotiated(harness: Harness) -> None:
    ctx = harness.connect()
    actions = ctx.getpriv()._actions
    assert actions == (Milter.ADDHDRS | Milter.CHGHDRS | Milter.MODBODY | Milter.DELRCPT
                       | Milter.QUARANTINE)
    protocol = ctx.getpriv()._protocol
    assert protocol & Milter.P_HDR_LEADSPC
    assert protocol & Milter.P_NR_HDR and protocol & Milter.P_NR_HELO
    assert protocol & Milter.P_NR_DATA  # only brings the queue id
    assert protocol & Milter.P_NR_BODY  # an oversized body is answered at end of message
    assert protocol & Milter.P_NOEOH  # a step we never use (DATA brings the queue id)
    assert not protocol & (Milter.P_NR_MAIL | Milter.P_NR_RCPT)  # these may refuse


def test_id_header_can_be_turned_off(harness: Harness) -> None:
    harness.configure(id_header="")
    ctx = harness.connect()
    assert ctx.send(CLEAN) == Milter.CONTINUE
    assert ctx.header_edits == []


def test_html_is_sanitized_and_the_body_replaced_in_crlf(harness: Harness) -> None:
    harness.use(policies=PolicyHolder(load_policy_set_from_sources(
        [("html.yaml", "version: 1\nname: html\nsanitize:\n  html: true\n")])))
    html = message("html", extra=b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n",
                   body=b"<p>hi<script>alert(1)</script></p>\r\n")
    ctx = harness.connect()
    assert ctx.send(html) == Milter.CONTINUE
    assert ctx.replaced_body is not None
    assert b"<script" not in ctx.replaced_body and b"<p>hi</p>" in ctx.replaced_body
    [event] = harness.audit.events
    assert event.changes and event.changes[0]["kind"] == "html_sanitized"


class SlowWorkers(concurrent.futures.ThreadPoolExecutor):
    """Runs each job after a pause, as a big message would take."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        def slow() -> Any:
            time.sleep(0.35)
            return fn(*args, **kwargs)

        return super().submit(slow)


def test_a_small_message_is_decided_here_a_large_one_on_the_pool(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    decide = decider.Decider.decide

    def recorded(self: decider.Decider, *args: Any) -> Any:
        threads.append(threading.get_ident())
        return decide(self, *args)

    monkeypatch.setattr(decider.Decider, "decide", recorded)
    monkeypatch.setattr(decider, "INLINE_BYTES", len(CLEAN))
    assert harness.connect().send(CLEAN) == Milter.CONTINUE
    assert threads == [threading.get_ident()]
    assert harness.connect().send(CLEAN + b"one more line\r\n") == Milter.CONTINUE
    assert len(threads) == 2 and threads[1] != threading.get_ident()
    assert [e.action for e in harness.audit.events] == ["accept", "accept"]


@pytest.mark.parametrize(("broken", "action", "kind"), [
    ((decider, "parse_for"), "error", "eom"),  # the callback's guard
    # The engine catches its own failures (a bug, a sanitizer child refused after an
    # upgrade in place) and defers: an alert on postwarden_errors_total must hear of it
    # too (the review of 6 December: it did not).
    ((engine, "_evaluate"), "tempfail", "evaluation"),
], ids=["parse", "evaluation"])
def test_internal_error_here_answers_the_fail_action_and_counts(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, broken: tuple[object, str],
    action: str, kind: str,
) -> None:
    def failing(*_args: Any) -> Any:
        raise RuntimeError("failed")

    monkeypatch.setattr(*broken, failing)
    ctx = harness.connect(queue_id="4QERR")
    assert ctx.send(CLEAN) == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.3.0", "Temporary internal error, try again later")
    assert [(e.action, e.queue_id) for e in harness.audit.events] == [(action, "4QERR")]
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": kind}) == 1


@pytest.mark.usefixtures("on_the_pool")
def test_long_work_sends_progress_replies(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decider, "PROGRESS_SECONDS", 0.1)
    progress: list[float] = []
    with SlowWorkers(max_workers=1) as slow:
        harness.use(workers=slow)
        ctx = harness.connect()
        monkeypatch.setattr(ctx, "progress", lambda: progress.append(time.monotonic()))
        assert ctx.send(CLEAN) == Milter.CONTINUE
    assert len(progress) >= 2  # one every PROGRESS_SECONDS while the job ran
    assert harness.audit.events[0].action == "accept"


@pytest.mark.usefixtures("on_the_pool")
def test_lines_logged_while_a_message_is_evaluated_carry_its_ids(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A large message is parsed and evaluated on the worker pool: its thread logs (a
    rewrite that failed, a part cut short) in the context of the message, with its
    queue id."""
    evaluate = decider.evaluate

    def noisy(*args: Any) -> Any:
        logging.getLogger("postwarden_policies.engine").warning("from the pool")
        return evaluate(*args)

    monkeypatch.setattr(decider, "evaluate", noisy)
    caplog.handler.addFilter(MessageContextFilter())
    ctx = harness.connect(queue_id="4QPOOL")
    assert ctx.send(CLEAN) == Milter.CONTINUE
    [record] = [r for r in caplog.records if r.getMessage() == "from the pool"]
    assert record.threadName.startswith("ThreadPoolExecutor")  # not the callback's thread
    assert (record.queue_id, record.uid) == ("4QPOOL", harness.audit.events[0].message_uid)


@pytest.mark.parametrize("inline_bytes", [decider.INLINE_BYTES, 0], ids=["here", "pool"])
def test_the_sanitizer_is_given_what_the_message_has_left(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, inline_bytes: int
) -> None:
    """Its children stop at the message's deadline; on libmilter's thread, which sends no
    progress replies, at INLINE_CHILD_SECONDS."""
    monkeypatch.setattr(decider, "INLINE_BYTES", inline_bytes)
    harness.configure(message_timeout_seconds=600)
    seen: list[float | None] = []
    evaluate = decider.evaluate

    def recording(*args: Any) -> Any:
        seen.append(DEADLINE.get())
        return evaluate(*args)

    monkeypatch.setattr(decider, "evaluate", recording)
    before = time.monotonic()
    assert harness.connect().send(CLEAN) == Milter.CONTINUE
    [deadline] = seen
    assert deadline is not None
    given = decider.INLINE_CHILD_SECONDS if inline_bytes else 600
    assert before + given <= deadline <= time.monotonic() + given
    assert DEADLINE.get() is None  # not left for the connection's next message


def test_the_row_of_a_message_whose_decision_failed_names_the_set_that_was_deciding(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reload (SIGHUP) while the message was decided, then the decision failed (past
    the deadline, an internal error): the row names the set it failed in, not the one
    put in force meanwhile, which never saw the message."""
    deciding = harness.services.policies.current
    reloaded = load_policy_set_from_sources(
        [("p.yaml", "version: 1\nname: reloaded\nrules: []\n")])

    def reload_then_fail(*_args: Any, **_kwargs: Any) -> Any:
        harness.services.policies.swap(reloaded)
        raise RuntimeError("failed")

    monkeypatch.setattr(decider, "parse_for", reload_then_fail)
    assert harness.connect().send(CLEAN) == Milter.TEMPFAIL
    [event] = harness.audit.events
    assert event.action == "error"
    assert event.policy_hash == deciding.content_hash != reloaded.content_hash


def test_new_mail_refused_while_stopping_is_logged_once_a_minute_with_a_count(
    harness: Harness, caplog: pytest.LogCaptureFixture,
) -> None:
    """A busy MX goes on connecting through the stop's drain (up to
    message_timeout_seconds): a line per refused MAIL FROM buried the stop's own lines."""
    harness.services.transactions.close()  # as a SIGTERM does
    caplog.set_level(logging.INFO, logger="postwarden_milter.handler")
    for n in range(5):
        ctx = harness.connect(ip=f"192.0.2.{20 + n}")
        assert ctx._envfrom("<alice@example.org>") == Milter.TEMPFAIL
        assert ctx._reply == ("421", "4.3.2", "Service busy, try again later")
    lines = [r.getMessage() for r in caplog.records if "stopping: refusing" in r.getMessage()]
    assert lines == ["stopping: refusing a new transaction (refused: 1 so far)"]
    assert {key: tally.count for key, tally in harness.services.occasional.unsaid().items()} \
        == {handler.REFUSED_STOPPING: 4}
