"""smtpd's DISCARD or HOLD before the message's queue file opened.

An access table's (or any smtpd restriction's) DISCARD or HOLD at a message's first
recipient is logged before smtpd opens the queue file, which it does once that
recipient is accepted: ``NOQUEUE: discard: RCPT from ...``, and the next line of the
same smtpd process is the message's first, ``QID: client=...``. No later line says
it: cleanup drops a discarded message without even its Message-ID line, and puts a
held one in the hold queue. So the stop is the message's when the process's next
line opens its queue file. Any other line of the process between them (the recipient
refused after a HOLD, which lets the checks go on, or by a milter; a session's end)
leaves it unknown whether the transaction that opens a queue file is the stopped one
(a RSET clears the stop, and is not logged): it is dropped, and the message stays as
before (``relayed``). A DISCARD beats a HOLD, as in cleanup. Lines of other smtpd
actions that leave the recipient accepted (warn, filter, redirect, ...) leave the
stop pending. A stop told once the file is open names its queue id
(:mod:`.deliverylines`).

Only the reading thread uses it, and only between :meth:`NoQueueStops.clear` calls,
as :mod:`.cutoffs`: lines another instance read meanwhile, or lost, may have ended
the transaction.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from .deliverylines import NOQUEUE, DeliveryEvent, stopped_by
from .syslogline import LogLine

_NOQUEUE = re.compile(rf"{NOQUEUE}: (?P<action>[a-z-]+): (?:RCPT|MAIL) from ")
_OPENED = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): client=")
_STOPS = ("hold", "discard")  # weakest first
# smtpd processes tracked at once; past it the oldest are forgotten (their stop then
# goes unread, as before).
MAX_TRACKED = 10_000


class NoQueueStops:
    def __init__(self, limit: int = MAX_TRACKED) -> None:
        self._stopped: OrderedDict[str, str] = OrderedDict()  # smtpd process: its stop
        self._limit = limit

    def event(self, line: LogLine) -> DeliveryEvent | None:
        """The stop ``line`` ties to the queue id it opens, read after the lines
        before it."""
        if line.daemon != "smtpd":
            return None
        stop = self._stopped.pop(line.process, None)
        if (noqueue := _NOQUEUE.match(line.text, line.start)) is not None:
            self._note(line.process, stop, noqueue["action"])
        elif stop is not None and (opened := _OPENED.match(line.text, line.start)):
            return stopped_by(opened["queue_id"], stop, milter=False)
        return None

    def _note(self, process: str, stop: str | None, action: str) -> None:
        """A stop pending for ``process`` after its line of ``action``."""
        if action.endswith("reject"):  # the recipient refused: unknown (module doc)
            return
        if action in _STOPS:
            stop = max(stop or action, action, key=_STOPS.index)
        if stop is not None:
            self._stopped[process] = stop
            if len(self._stopped) > self._limit:
                self._stopped.popitem(last=False)

    def clear(self) -> None:
        self._stopped.clear()
