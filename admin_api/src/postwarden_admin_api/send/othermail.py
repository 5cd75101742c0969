"""Queue ids of other mail, as the maillog reader saw them arrive: their lines need not wait.

cleanup logs each message's Message-ID before any line about its delivery. One
not shaped like ours (:mod:`.receipts`) says the queue id is another's until a
line starts it afresh (Postfix reuses short queue ids: the next message's
``client=``, or a Message-ID of ours) or says it is removed or deleted. The reader drops
such mail's lines as it parses them, instead of keeping them for
``PENDING_SECONDS`` and asking Postgres at every poll whether their queue id
is ours: on a busy server nearly every line is one. A queue id not seen
arriving (before a restart, or a message discarded before its Message-ID was
logged) waits as before. Only the reading thread uses it, and only between
:meth:`clear` calls: lines another instance read meanwhile may have started a
queue id afresh.
"""

from __future__ import annotations

from collections import OrderedDict

from .deliverylines import DeliveryEvent
from .receipts import ReceiptLine

# Messages of other mail in Postfix's queue at once; past it the oldest are
# forgotten, and their lines wait as unknown ones do. About 15 MB.
MAX_TRACKED = 100_000


class OtherMail:
    def __init__(self, limit: int = MAX_TRACKED) -> None:
        # In the order they arrived. An OrderedDict drops its oldest in constant time;
        # a dict's first key is found past every one deleted before it (quadratic).
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def note(self, receipt: ReceiptLine) -> None:
        if receipt.foreign:
            self._ids[receipt.queue_id] = None
            self._ids.move_to_end(receipt.queue_id)
            if len(self._ids) > self._limit:
                self._ids.popitem(last=False)
        elif not receipt.committed:  # the queue id starts afresh, maybe as ours
            self._ids.pop(receipt.queue_id, None)

    def claims(self, event: DeliveryEvent) -> bool:
        """Whether ``event`` is about other mail; its last line (removed, or deleted by
        an administrator) forgets it."""
        if event.queue_id not in self._ids:
            return False
        if event.status in ("removed", "deleted"):
            del self._ids[event.queue_id]
        return True

    def clear(self) -> None:
        self._ids.clear()
