"""A row found by a recipient says when the message did not go to them: recipients
refused at RCPT by the milter's own limit (452 4.5.3) and those end of message deleted
(a limit lowered by a reload after RCPT) are changes of the transaction's row."""

from __future__ import annotations

import io

import Milter

from postwarden_milter.session import REFUSED_KEPT
from postwarden_policies import load_policy_set_from_sources
from tests.milter.conftest import Harness
from tests.milter.test_callbacks import CLEAN

REFUSED = "452 4.5.3 Too many recipients"  # conftest's policy: max_recipients 3


def refused(address: str) -> dict[str, object]:
    return {"kind": "recipient_refused", "recipient": address, "reply": REFUSED}


def test_recipients_refused_at_rcpt_are_in_the_row(harness: Harness) -> None:
    ctx = harness.connect()
    rcpts = tuple(f"r{n}@example.net" for n in range(5))
    assert ctx.send(CLEAN, recipients=rcpts) == Milter.CONTINUE
    [event] = harness.audit.events
    assert event.recipients == rcpts[:3]
    assert event.changes == (refused("r3@example.net"), refused("r4@example.net"))


def test_an_aborted_transaction_names_its_refused_recipients(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    for n in range(4):
        ctx._envrcpt(f"<r{n}@example.net>")
    ctx._abort()
    [event] = harness.audit.events
    assert (event.action, event.changes) == ("aborted", (refused("r3@example.net"),))


def test_the_next_transaction_starts_with_none_refused(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx.send(CLEAN, recipients=tuple(f"r{n}@example.net" for n in range(4))) \
        == Milter.CONTINUE
    assert ctx.send(CLEAN) == Milter.CONTINUE
    assert [len(e.changes) for e in harness.audit.events] == [1, 0]


def test_refused_recipients_past_the_bound_are_counted(harness: Harness) -> None:
    ctx = harness.connect()
    rcpts = tuple(f"r{n}@example.net" for n in range(3 + REFUSED_KEPT + 7))
    assert ctx.send(CLEAN, recipients=rcpts) == Milter.CONTINUE
    [event] = harness.audit.events
    assert [c["recipient"] for c in event.changes] == list(rcpts[3 : 3 + REFUSED_KEPT])
    assert event.changes[-1] == {**refused(rcpts[2 + REFUSED_KEPT]), "more": 7}
    assert all("more" not in c for c in event.changes[:-1])


def test_recipients_deleted_at_end_of_message_are_in_the_row(harness: Harness) -> None:
    ctx = harness.connect()
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    for rcpt in ("bob@example.net", "carol@example.net", "dave@example.net"):
        assert ctx._envrcpt(f"<{rcpt}>") == Milter.CONTINUE
    # A reload between RCPT and end of message lowers the limit.
    harness.services.policies.swap(load_policy_set_from_sources(
        [("test.yaml", "version: 1\nname: test\nlimits:\n  max_recipients: 1\n")]))
    ctx._data()
    head, _, body = CLEAN.partition(b"\r\n\r\n")
    for line in head.replace(b"\r\n ", b"\n ").split(b"\r\n"):
        name, _, value = line.partition(b":")
        ctx._header(name.decode(), value.decode())
    ctx._eoh()
    ctx._feed_body(io.BytesIO(body))
    assert ctx._eom() == Milter.CONTINUE
    assert ctx._delrcpt == ["<carol@example.net>", "<dave@example.net>"]
    [event] = harness.audit.events
    assert event.recipients == ("bob@example.net", "carol@example.net", "dave@example.net")
    assert event.changes == (
        {"kind": "recipient_deleted", "recipient": "carol@example.net"},
        {"kind": "recipient_deleted", "recipient": "dave@example.net"},
    )
