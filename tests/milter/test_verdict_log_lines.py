"""What an admin greps for: each audited transaction is one line with the same fields,
whether the policies, a limit or an abort ended it, and the queue id and our id in
the line's prefix."""

from __future__ import annotations

import logging

import Milter
import pytest

from postwarden_milter.logcontext import LOG_FORMAT, MessageContextFilter
from postwarden_milter.reload import PolicyHolder
from postwarden_policies import load_policy_set_from_sources
from tests.milter.conftest import Harness
from tests.milter.test_callbacks import EXE, _headers_only, message


def _handler_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter(LOG_FORMAT)
    return [formatter.format(r).split(" ", 4)[4]  # after the time, level and logger
            for r in caplog.records if r.name == "postwarden_milter.handler"]


def test_every_audited_transaction_logs_one_line_with_the_same_fields(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(MessageContextFilter())
    assert harness.connect(queue_id="4QEXE").send(EXE) == Milter.REJECT
    big = message("big", body=b"x" * 76 + b"\r\n") + b"y" * 78 * 400  # past 20 000 bytes
    assert harness.connect(queue_id="4QBIG").send(big) == Milter.REJECT
    ctx = harness.connect(queue_id="4QGONE")
    _headers_only(ctx, "carol@example.org")
    ctx._priv.abort()  # the client went away during DATA
    exe, oversized, gone = (event.message_uid for event in harness.audit.events)
    assert _handler_lines(caplog) == [
        f"[4QEXE {exe}] reject from=<alice@example.org> nrcpt=1 rules=no-exe changes=- "
        "reply=550 5.7.1 Message rejected by policy",
        f"[4QBIG {oversized}] reject from=<alice@example.org> nrcpt=1 "
        "rules=limit:max_message_bytes changes=- reply=552 5.3.4 Message size exceeds fixed limit",
        f"[4QGONE {gone}] aborted from=<carol@example.org> nrcpt=1 rules=- changes=- reply=-",
    ]


def test_the_line_of_a_sanitized_message_names_its_changes(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.use(policies=PolicyHolder(load_policy_set_from_sources(
        [("s.yaml", "version: 1\nname: s\nsanitize:\n  html: true\nrules: []\n")])))
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(MessageContextFilter())  # the prefix's fields, run alone too
    html = message("hi", extra=b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n",
                   body=b"<p>hi</p><script>steal()</script>\r\n")
    assert harness.connect(queue_id="4QHTML").send(html) == Milter.CONTINUE
    [line] = _handler_lines(caplog)
    assert " accept from=<alice@example.org> nrcpt=1 rules=- changes=html_sanitized " in line
