"""Postfix's queue id reaches the milter from DATA on: a message with one recipient
that ends before end of message is still audited and logged under it."""

from __future__ import annotations

import logging

import Milter
import pytest

from postwarden_milter.logcontext import MessageContextFilter
from tests.milter.conftest import Harness


def test_data_is_negotiated_without_a_reply(harness: Harness) -> None:
    ctx = harness.connect()
    protocol = ctx.getpriv()._protocol
    assert protocol & Milter.P_NR_DATA and not protocol & Milter.P_NODATA
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
    assert ctx._data() == Milter.NOREPLY  # one more step per message, not a round trip


def test_a_message_aborted_during_data_is_audited_and_logged_with_its_queue_id(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="postwarden_milter.handler")
    caplog.handler.addFilter(MessageContextFilter())
    # As Postfix sends it: no queue id at MAIL and at the first RCPT (Postfix makes it
    # once that recipient is accepted), then the DATA step with its macro ``i``.
    ctx = harness.connect(queue_id="")
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    assert ctx._envrcpt("<bob@example.net>") == Milter.CONTINUE
    ctx._setsymval("i", "4QDATA")
    ctx._data()
    ctx._header("Subject", " Lunch")
    ctx._priv.body(b"See you")
    ctx._priv.abort()  # the client went away during DATA
    [event] = harness.audit.events
    assert (event.action, event.queue_id, event.subject) == ("aborted", "4QDATA", "Lunch")
    [record] = [r for r in caplog.records if r.name == "postwarden_milter.handler"]
    assert (record.queue_id, record.uid) == ("4QDATA", event.message_uid)
