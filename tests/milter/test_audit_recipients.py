"""A row found by a recipient says when the message did not go to them: recipients
refused at RCPT by the milter's own limit (452 4.5.3) and those end of message deleted
(a limit lowered by a reload after RCPT) are changes of the transaction's row."""

from __future__ import annotations

import io

import Milter

from postwarden_milter.events import build_event
from postwarden_milter.session import REFUSED_KEPT, Client, Transaction
from postwarden_policies import load_policy_set_from_sources
from postwarden_policies.verdicts import Accept, AttachmentStripped, Verdict
from postwarden_store.audit import stored_values
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


def test_recipients_not_served_come_first_and_survive_the_stores_bound() -> None:
    """The store keeps a row's first changes, within a bound (postwarden_store.audit):
    behind a verdict that stripped hundreds of attachments, the recipients refused or
    deleted were cut, and the audit search by recipient could not find the row."""
    txn = Transaction(sender="s@example.org", auth_user=None, memory_threshold=1 << 20,
                      max_bytes=None, queue_id="Q1")
    txn.recipients.append("kept@example.net")
    txn.refuse_recipient("<late@example.net>", REFUSED)
    stripped = tuple(AttachmentStripped(part=f"1.{n}", filename=f"{n:04d}-{'x' * 200}.exe",
                                        size=10, sha256="0" * 64, reason="no-exe")
                     for n in range(600))
    event = build_event(instance="mx1", transaction=txn, client=Client("192.0.2.7"),
                        action="accept", reply=None, policy_hash="h",
                        verdict=Verdict(decision=Accept(), changes=stripped, rules=("no-exe",)))
    stored = stored_values(event)["changes"]
    assert stored[0] == refused("late@example.net")
    assert len(stored) < len(event.changes)  # the bound cut the verdict's, not the refusal
    assert "truncated" in stored_values(event)["flags"]
