"""Which queue ids the maillog reader knows to be other mail's, from the lines it read."""

from __future__ import annotations

import uuid

from postwarden_admin_api.send.deliverylines import DeliveryEvent
from postwarden_admin_api.send.othermail import OtherMail
from postwarden_admin_api.send.receipts import ReceiptLine

FOREIGN = ReceiptLine("Q1", None, committed=False, foreign=True)  # a Message-ID not ours


def delivered(queue_id: str) -> DeliveryEvent:
    return DeliveryEvent(queue_id, "a@example.org", "delivered", "2.0.0", "250 ok")


def removed(queue_id: str) -> DeliveryEvent:
    return DeliveryEvent(queue_id, None, "removed", "", "")


def test_lines_after_a_message_id_of_other_mail_are_its_until_removed() -> None:
    other = OtherMail()
    other.note(FOREIGN)
    other.note(ReceiptLine("Q1", None, committed=True))  # queue active: still theirs
    assert other.claims(delivered("Q1"))
    assert not other.claims(delivered("Q2"))
    assert other.claims(removed("Q1"))
    assert not other.claims(delivered("Q1"))  # forgotten: the queue id may come back


def test_a_queue_id_that_starts_afresh_is_no_longer_known() -> None:
    """Postfix reuses short queue ids: the next message's client= line, or a Message-ID
    of ours, ends what was known."""
    for fresh in (ReceiptLine("Q1", None, committed=False),
                  ReceiptLine("Q1", uuid.uuid4(), committed=False)):
        other = OtherMail()
        other.note(FOREIGN)
        other.note(fresh)
        assert not other.claims(delivered("Q1"))


def test_past_its_limit_the_oldest_queue_ids_are_forgotten() -> None:
    other = OtherMail(limit=2)
    for queue_id in ("Q1", "Q2", "Q1", "Q3"):  # Q1 seen again: the newest of the two
        other.note(ReceiptLine(queue_id, None, committed=False, foreign=True))
    assert [other.claims(delivered(q)) for q in ("Q1", "Q2", "Q3")] == [True, False, True]


def test_clear_forgets_everything() -> None:
    other = OtherMail()
    other.note(FOREIGN)
    other.clear()
    assert not other.claims(delivered("Q1"))
