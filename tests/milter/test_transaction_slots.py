"""max_concurrency counts transactions whose content the milter holds, not connections
nor transactions still in their envelope: a slot is taken with the first header or body
chunk (which Postfix sends once the client ended DATA) and given back wherever the
transaction ends. Postfix holds the milter's connection for the whole SMTP session, and
a slow client its transaction for minutes: counting either let a few dozen clients lock
all mail out."""

from __future__ import annotations

from typing import Any

import Milter
import pytest

from postwarden_milter import decider
from postwarden_milter.session import Slots, Transaction
from tests.milter.conftest import Ctx, Harness
from tests.milter.test_callbacks import CLEAN, EXE, message

BUSY = ("421", "4.3.2", "Service busy, try again later")


def _open(ctx: Ctx, sender: str = "alice@example.org") -> None:
    """A transaction as far as its headers."""
    assert ctx._envfrom(f"<{sender}>") == Milter.CONTINUE
    assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
    ctx._data()
    ctx._header("Subject", " open")
    ctx._eoh()


def _active(harness: Harness) -> int:
    return harness.services.slots.active


def _connections(harness: Harness) -> float | None:
    return harness.metrics.registry.get_sample_value("postwarden_connections")


def test_idle_sessions_take_no_slot_and_still_count_as_connections(harness: Harness) -> None:
    harness.use(slots=Slots(2))
    idle = [harness.connect(ip=f"192.0.2.{n}") for n in range(1, 81)]  # EHLO, then nothing
    assert _active(harness) == 0
    assert _connections(harness) == 80
    ctx = harness.connect(queue_id="4QREAL")
    assert ctx.send(CLEAN) == Milter.CONTINUE
    assert [e.action for e in harness.audit.events] == ["accept"]
    for session in [*idle, ctx]:
        session._close()
    assert (_active(harness), _connections(harness)) == (0, 0)


def test_transactions_in_their_envelope_take_no_slot(harness: Harness) -> None:
    """Slow clients that sent MAIL FROM and RCPT TO and send nothing more (a byte a
    second of DATA: Postfix passes the content on only once it ends) hold no slot."""
    harness.use(slots=Slots(2))
    slow = [harness.connect(ip=f"192.0.2.{n}") for n in range(1, 21)]
    for ctx in slow:
        assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
        assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
        ctx._data()
    assert _active(harness) == 0
    ctx = harness.connect(queue_id="4QREAL")
    assert ctx.send(CLEAN) == Milter.CONTINUE
    assert [e.action for e in harness.audit.events] == ["accept"]
    for session in slow:  # their content comes at last: each gets a slot in turn
        assert session.send(CLEAN) == Milter.CONTINUE  # a new transaction: the old aborts
    assert _active(harness) == 0


def test_content_past_the_bound_is_not_kept_and_gets_451(harness: Harness) -> None:
    """Content that comes once the slots are taken (its MAIL FROM found one free) is not
    kept; end of message answers 451 and the row says so; the session goes on."""
    harness.use(slots=Slots(1))
    first, second = harness.connect(queue_id="4QFIRST"), harness.connect(queue_id="4QLATE")
    for ctx in (first, second):
        assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
        assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
        ctx._data()
    first._header("Subject", " first")
    second._header("Subject", " second")
    assert _active(harness) == 1
    second._eoh()
    assert second._eom() == Milter.TEMPFAIL
    assert second._reply == ("451", "4.3.2", "Service busy, try again later")
    [late] = harness.audit.events
    assert (late.action, late.smtp_reply, late.subject, late.flags) == (
        "tempfail", "451 4.3.2 Service busy, try again later", None,  # nothing of it kept
        ("overloaded",))
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "overload"}) == 1
    first._eoh()
    assert first._eom() == Milter.CONTINUE
    assert _active(harness) == 0
    assert second.send(CLEAN) == Milter.CONTINUE  # its next message, now the slot is free
    assert [e.action for e in harness.audit.events] == ["tempfail", "accept", "accept"]


def test_an_empty_message_takes_a_slot_at_its_end(harness: Harness) -> None:
    harness.use(slots=Slots(1))
    holder, empty = harness.connect(queue_id="4QHOLD"), harness.connect(queue_id="4QEMPTY")
    _open(holder)
    assert empty._envfrom("<alice@example.org>") == Milter.TEMPFAIL  # slots full: 421
    holder._eom()
    assert empty._envfrom("<alice@example.org>") == Milter.CONTINUE
    assert empty._envrcpt("<bob@example.net>") == Milter.CONTINUE
    _open(holder)  # takes the slot meanwhile
    empty._data()
    assert empty._eom() == Milter.TEMPFAIL
    holder._eom()
    assert _active(harness) == 0


def test_past_the_bound_a_new_transaction_gets_421_while_running_ones_finish(
    harness: Harness,
) -> None:
    harness.use(slots=Slots(2))
    running = [harness.connect(queue_id=f"4QRUN{n}") for n in range(2)]
    for ctx in running:
        _open(ctx)
    assert _active(harness) == 2
    late = harness.connect(queue_id="4QLATE")
    assert late._envfrom("<carol@example.org>") == Milter.TEMPFAIL
    assert late._reply == BUSY
    assert harness.audit.events == []  # nothing of that message came
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "overload"}) == 1
    for ctx in running:
        assert ctx._eom() == Milter.CONTINUE
    assert [e.action for e in harness.audit.events] == ["accept", "accept"]
    assert _active(harness) == 0
    again = harness.connect(queue_id="4QAGAIN")
    assert again.send(CLEAN) == Milter.CONTINUE


def _ended(harness: Harness, monkeypatch: pytest.MonkeyPatch, ctx: Ctx, how: str) -> None:
    """Open a transaction on ``ctx`` and end it ``how``; each holds a slot while open."""
    if how == "accept":
        assert ctx.send(CLEAN) == Milter.CONTINUE
    elif how == "policy reject":
        assert ctx.send(EXE) == Milter.REJECT
    elif how == "too big at end of message":
        big = message("big", body=b"x" * 76 + b"\r\n") + b"y" * 78 * 400
        assert ctx.send(big) == Milter.REJECT
    elif how == "too big at MAIL FROM":
        assert ctx._envfrom("<alice@example.org>", "SIZE=999999") == Milter.REJECT
    elif how == "too many header deletions":
        assert ctx.send(message("ids", extra=b"X-Postwarden-Id: x\r\n" * 101)) == Milter.REJECT
    elif how == "too many recipients":
        rcpts = tuple(f"r{n}@example.net" for n in range(5))
        assert ctx.send(CLEAN, recipients=rcpts) == Milter.CONTINUE
    elif how == "error at end of message":
        with monkeypatch.context() as patch:
            patch.setattr(decider, "parse_for", _broken)
            assert ctx.send(CLEAN) == Milter.TEMPFAIL
    elif how == "error in a no-reply step":
        with monkeypatch.context() as patch:
            patch.setattr(Transaction, "add_header", _broken)
            assert ctx.send(CLEAN) == Milter.TEMPFAIL
    else:
        _open(ctx)
        assert _active(harness) == 1
        if how == "abort":
            ctx._priv.abort()
        elif how == "new MAIL FROM":
            assert ctx.send(CLEAN, sender="carol@example.org") == Milter.CONTINUE
        elif how == "stop deadline":
            assert harness.services.transactions.cut() == 1
        else:
            assert how == "close", how
            ctx._close()


def _broken(*_args: Any) -> Any:
    raise RuntimeError("broken")


ENDINGS = ("accept", "policy reject", "too big at end of message", "too big at MAIL FROM",
           "too many header deletions", "too many recipients", "error at end of message",
           "error in a no-reply step", "abort", "new MAIL FROM", "stop deadline", "close")


def test_no_way_a_transaction_ends_leaks_its_slot(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.use(slots=Slots(1))  # a slot kept anywhere refuses every later transaction
    sessions = [harness.connect(ip=f"192.0.2.{n}") for n in range(1, 4)]
    for round_ in range(10):
        for n, how in enumerate(ENDINGS):
            at = (round_ + n) % len(sessions)
            _ended(harness, monkeypatch, sessions[at], how)
            assert _active(harness) == 0, how
            if how == "close":  # the client's next session
                sessions[at] = harness.connect()
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "overload"}) == 0
    for ctx in sessions:
        ctx._close()
    assert (_active(harness), _connections(harness)) == (0, 0)


def test_refusals_at_mail_from_hold_no_slot(harness: Harness) -> None:
    ctx = harness.connect()
    harness.audit.refusing_mail = True
    assert ctx._envfrom("<alice@example.org>") == Milter.TEMPFAIL  # the spool is full
    assert _active(harness) == 0
    harness.audit.refusing_mail = False
    harness.services.transactions.close()  # a stop began
    assert ctx._envfrom("<alice@example.org>") == Milter.TEMPFAIL
    assert ctx._reply == BUSY
    assert _active(harness) == 0
