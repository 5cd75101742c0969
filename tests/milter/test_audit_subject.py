"""The subject an audit row keeps: redacted, cut to 200 characters, and the row flagged
``truncated`` when it was cut, as the store flags what it cuts itself."""

from __future__ import annotations

import Milter

from postwarden_milter.events import MAX_SUBJECT
from tests.milter.conftest import Harness
from tests.milter.test_callbacks import message


def test_a_subject_cut_for_the_row_flags_it_truncated(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(message("x" * (MAX_SUBJECT + 1))) == Milter.CONTINUE
    assert ctx.send(message("y" * MAX_SUBJECT, message_id="<m2@example.org>")) \
        == Milter.CONTINUE
    cut, whole = harness.audit.events
    assert (cut.subject, "truncated" in cut.flags) == ("x" * (MAX_SUBJECT - 1) + "…", True)
    assert (whole.subject, "truncated" in whole.flags) == ("y" * MAX_SUBJECT, False)


def test_a_redacted_subject_is_cut_after_redaction(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(message("password=hunter2 " + "z" * MAX_SUBJECT)) == Milter.CONTINUE
    [event] = harness.audit.events
    assert event.subject is not None and "hunter2" not in event.subject
    assert "truncated" in event.flags
