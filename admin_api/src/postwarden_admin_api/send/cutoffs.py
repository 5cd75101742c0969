"""Transfers cut off mid-DATA: Postfix's log says it did not queue them.

smtpd logs ``lost connection after DATA (N bytes) from ...`` (or ``timeout``) when
the client's connection ends while the message is still arriving: it says
``END-OF-MESSAGE`` from the moment it read the final dot, before it asks cleanup to
commit the file, so such a file is never committed (cleanup removes it without a
line). Postfix 3.10 and later start the line with the queue id; older ones name
none, and the queue id is that of the session's message: the last ``client=`` line
of the same smtpd process (each session has one process, which logs ``connect
from`` and ``disconnect from`` at its ends). cleanup is a process of its own and
logs the Message-ID as it reads the headers, often after smtpd's line: a Message-ID
line of a queue id cut off reads as a reject (:mod:`.receipts`), so no receipt stays
open, until a ``client=`` or ``uid=`` line starts the queue id afresh (Postfix reuses
short queue ids). A connection lost after the final dot says nothing either way
(cleanup may have committed the file: that line is not even logged), nor does the
disconnect line's ``data=0/1`` (a 250 that could not be written counts as a failed
DATA after the commit).

Only the reading thread uses it, and only between :meth:`CutOffs.clear` calls: lines
another instance read meanwhile, or lost (a log emptied in place, no copy beside it),
may have ended a session or started a queue id afresh.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from .deliverylines import NOQUEUE
from .receipts import ReceiptLine, parse_receipt
from .syslogline import LogLine

_CUT_OFF = re.compile(r"(?:(?P<queue_id>[0-9A-Za-z]+): )?(?:lost connection|timeout) "
                      r"after DATA \(\d+ bytes\) from ")
_SESSION = re.compile(r"(?:dis)?connect from ")
# smtpd processes and queue ids tracked at once; past it the oldest are forgotten (their
# cut-offs then leave the receipt open, as before). About 2 MB each.
MAX_TRACKED = 10_000


def _put(ids: OrderedDict[str, str], key: str, value: str, limit: int) -> None:
    ids[key] = value
    ids.move_to_end(key)
    if len(ids) > limit:
        ids.popitem(last=False)


class CutOffs:
    def __init__(self, limit: int = MAX_TRACKED) -> None:
        self._receiving: OrderedDict[str, str] = OrderedDict()  # smtpd process: its queue id
        self._cut: OrderedDict[str, str] = OrderedDict()  # queue id cut off: its smtpd process
        self._limit = limit

    def receipt(self, line: LogLine) -> ReceiptLine | None:
        """The receipt line ``line`` is (:func:`.receipts.parse_receipt`), read after the
        lines before it: a cut-off, or a Message-ID line of a queue id cut off, reads as
        a reject."""
        receipt = parse_receipt(line)
        if receipt is not None and not receipt.committed:
            if receipt.message is None and not receipt.foreign:  # it starts afresh
                self._cut.pop(receipt.queue_id, None)
            elif self._cut.pop(receipt.queue_id, None) is not None:
                return ReceiptLine(receipt.queue_id, None, committed=False)
        if line.daemon != "smtpd":
            return receipt
        if receipt is not None:  # client=: the session's message
            _put(self._receiving, line.process, receipt.queue_id, self._limit)
        elif (cut := _CUT_OFF.match(line.text, line.start)) is not None:
            queue_id = cut["queue_id"] or self._receiving.get(line.process)
            if queue_id is not None and queue_id != NOQUEUE:
                _put(self._cut, queue_id, line.process, self._limit)
                return ReceiptLine(queue_id, None, committed=False)
        elif _SESSION.match(line.text, line.start):
            self._receiving.pop(line.process, None)
        return receipt

    def clear(self) -> None:
        self._receiving.clear()
        self._cut.clear()
