"""Messages of ours that an after-queue content filter hands back to Postfix.

With ``content_filter`` (amavis, or a second Postfix instance in a chain) Postfix
delivers the message to the filter, which queues it again in this Postfix under a
new queue id: the first queue id's ``status=sent (250 ... queued as NEWQID)`` is that
hand-over, not a delivery, and the recipients' results are NEWQID's lines. A
delivery line is a hand-over when NEWQID arrived in this log with a Message-ID of
ours (cleanup names it before the filter answers): the message is followed under
NEWQID from then on, as after a requeue. A remote server's ``queued as`` names no
queue id of this log, and stays a delivery. Only the reader that saw NEWQID arrive
knows it is ours: a hand-over read by the next one (a restart between the two lines)
is taken for a delivery, as before; a message a filter splits among several new
queue ids is followed under the first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import replace

from .deliverylines import DeliveryEvent
from .receipts import ReceiptLine

_QUEUED_AS = re.compile(r"\bqueued as ([0-9A-Za-z]+)$")
# Queue ids of ours remembered at once; past it the oldest are forgotten (their
# hand-overs then read as deliveries, as before). About 15 MB.
MAX_ARRIVALS = 100_000


class Arrivals:
    """The queue ids our messages arrived under in this log, as the reader saw them."""

    def __init__(self, limit: int = MAX_ARRIVALS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def note(self, receipt: ReceiptLine) -> None:
        if receipt.message is not None:
            self._ids[receipt.queue_id] = None
            self._ids.move_to_end(receipt.queue_id)
            if len(self._ids) > self._limit:
                self._ids.popitem(last=False)
        elif not receipt.committed:  # the queue id starts afresh as other mail's
            self._ids.pop(receipt.queue_id, None)

    def handed_over(self, event: DeliveryEvent) -> DeliveryEvent:
        """``event``, naming the queue id it hands over to when it is a hand-over."""
        found = _QUEUED_AS.search(event.reply) if event.status == "delivered" else None
        if found is None or found[1] not in self._ids or found[1] == event.queue_id:
            return event
        return replace(event, handed_to=found[1])

    def clear(self) -> None:
        self._ids.clear()
