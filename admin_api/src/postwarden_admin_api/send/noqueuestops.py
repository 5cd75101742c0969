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
before (``relayed``), unless the session's end says it held one transaction: one MAIL
command and no RSET (``mail=1``, no ``rset=``): the stop is then the queue id the
session opened (smtpd keeps a HOLD or DISCARD for the transaction, whatever becomes
of the recipient it was told for). A DISCARD beats a HOLD, as in cleanup. Lines of other smtpd
actions that leave the recipient accepted (warn, filter, redirect, ...) leave the
stop pending. A stop told once the file is open names its queue id
(:mod:`.deliverylines`).

No line commits a held message's file either (qmgr never reads the hold queue): its
receipt (:mod:`.receipts`) stayed open, and a relay that lost Postfix's answer sent it
again once that was old, where the queue could not be listed. Of a hold smtpd logs (at
RCPT, or once the file is open under its queue id), or cleanup (``QID: hold: header
...``, by header_checks or body_checks: of the session whose smtpd process opened the
queue id last), smtpd's end of the session commits it when the line counts every DATA
(or BDAT) of the session answered (``data=1``, not ``data=0/1``): a 250 follows the
file's commit. A session whose line counts one refused says nothing of which (a 250
that could not be written counts as refused too): its held receipts stay open, as
before. A message's first line under the queue id (another message's, once the file
was removed after a RSET) forgets the hold.

Only the reading thread uses it, and only between :meth:`NoQueueStops.clear` calls,
as :mod:`.cutoffs`: lines another instance read meanwhile, or lost, may have ended
the transaction. What it holds is saved with the read position (:meth:`saved`,
migration 0059): the next reader reads on from the line after the last one it saw.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from .deliverylines import NOQUEUE, DeliveryEvent, stopped_by
from .receipts import ReceiptLine
from .syslogline import LogLine

_NOQUEUE = re.compile(rf"{NOQUEUE}: (?P<action>[a-z-]+): (?:RCPT|MAIL) from ")
_OPENED = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): client=")
_HELD = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): hold: [A-Z-]+ from ")
_CHECKS_HELD = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): hold: (?:header|body) ")
_SESSION = re.compile(r"(?P<end>dis)?connect from ")
_DATA_REFUSED = re.compile(r" (?:data|bdat)=\d+/")
_DATA_DONE = re.compile(r" (?:data|bdat)=[1-9]")
# One MAIL command, none refused, and no RSET: the session held one transaction.
_ONE_TRANSACTION = re.compile(r"^(?!.* rset=).* mail=1(?: |$)")
_STOPS = ("hold", "discard")  # weakest first
# smtpd processes tracked at once; past it the oldest are forgotten (their stop then
# goes unread, as before).
MAX_TRACKED = 10_000


class NoQueueStops:
    def __init__(self, limit: int = MAX_TRACKED) -> None:
        self._stopped: OrderedDict[str, str] = OrderedDict()  # smtpd process: its stop
        # smtpd process: the strongest stop a refusal left unknown in its session, and
        # the queue id the session opened after it ("" until then).
        self._doubts: OrderedDict[str, tuple[str, str]] = OrderedDict()
        # Queue ids held: the smtpd process whose session's end commits each.
        self._held: OrderedDict[str, str] = OrderedDict()
        # And the other way: a session's end finds its holds without a look through all
        # (those whose session's end was never read, a log lost or smtpd killed, stay to
        # the limit, and each connect and disconnect line would look through them).
        self._sessions: OrderedDict[str, list[str]] = OrderedDict()
        # smtpd process: the queue id its session opened last. Only sessions in flight,
        # so a lookup by queue id looks through few; not saved (a hold cleanup logs
        # before a restart and the session's end after it stays uncommitted).
        self._receiving: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def read(self, line: LogLine) -> tuple[DeliveryEvent | None, list[ReceiptLine]]:
        """The stop ``line`` ties to the queue id it opens (or its session opened), and
        the receipts of held messages it commits, read after the lines before it."""
        text, start = line.text, line.start
        if line.daemon == "cleanup" and (held := _CHECKS_HELD.match(text, start)):
            self._checks_held(held["queue_id"])
        if line.daemon != "smtpd":
            return None, []
        stop = self._stopped.pop(line.process, None)
        if (session := _SESSION.match(text, start)) is not None:
            self._receiving.pop(line.process, None)
            return self._ended(line.process, text[session.end():] if session["end"] else None)
        if (noqueue := _NOQUEUE.match(text, start)) is not None:
            self._note(line.process, stop, noqueue["action"])
        elif (held := _HELD.match(text, start)) is not None:
            self._hold(line.process, held["queue_id"])  # told once the file is open
        elif (opened := _OPENED.match(text, start)) is not None:
            self._receiving[line.process] = opened["queue_id"]
            _bound(self._receiving, line.process, self._limit)
            return self._opened(line.process, opened["queue_id"], stop), []
        return None, []

    def _checks_held(self, queue_id: str) -> None:
        """cleanup's hold of ``queue_id``: for the end of the session receiving it."""
        process = next((p for p, q in self._receiving.items() if q == queue_id), None)
        if process is not None:
            self._hold(process, queue_id)

    def started(self, receipt: ReceiptLine) -> None:
        """A line that starts ``receipt``'s queue id afresh was read (before :meth:`read`
        reads it): a message's first line is another message's than a hold read before."""
        if receipt.first:
            self._held.pop(receipt.queue_id, None)

    def _opened(self, process: str, queue_id: str, stop: str | None) -> DeliveryEvent | None:
        if (doubt := self._doubts.get(process)) is not None and not doubt[1]:
            if stop is not None and _strongest(doubt[0], stop) == stop:
                del self._doubts[process]  # told now: not again at the session's end
            else:
                self._doubts[process] = (doubt[0], queue_id)
        if stop is None:
            return None
        if stop == "hold":
            self._hold(process, queue_id)
        return stopped_by(queue_id, stop, milter=False)

    def _ended(self, process: str, counts: str | None
               ) -> tuple[DeliveryEvent | None, list[ReceiptLine]]:
        """At a session's start (``counts`` None) or end: the stop a refusal left
        unknown, when the session held one transaction, and the held receipts it
        commits, every DATA answered (module doc)."""
        stop, queue_id = self._doubts.pop(process, ("", ""))
        event = None
        if counts is not None and queue_id and _ONE_TRANSACTION.match(counts):
            event = self._opened(process, queue_id, stop)
        held = [queue_id for queue_id in self._sessions.pop(process, ())
                if self._held.get(queue_id) == process]
        for queue_id in held:
            del self._held[queue_id]
        if counts is None or _DATA_REFUSED.search(counts) or not _DATA_DONE.search(counts):
            return event, []
        return event, [ReceiptLine(queue_id, None, committed=True) for queue_id in held]

    def _hold(self, process: str, queue_id: str) -> None:
        if self._held.get(queue_id) == process:  # told again (a later recipient's hold)
            return
        self._held[queue_id] = process
        self._sessions.setdefault(process, []).append(queue_id)
        _bound(self._sessions, process, self._limit)
        _bound(self._held, queue_id, self._limit)

    def _note(self, process: str, stop: str | None, action: str) -> None:
        """A stop pending for ``process`` after its line of ``action``."""
        if action.endswith("reject"):  # the recipient refused: unknown (module doc)
            if stop is not None:
                doubt = self._doubts.get(process, (stop, ""))[0]
                self._doubts[process] = (_strongest(doubt, stop), "")
                _bound(self._doubts, process, self._limit)
            return
        if action in _STOPS:
            stop = _strongest(stop or action, action)
        if stop is not None:
            self._stopped[process] = stop
            _bound(self._stopped, process, self._limit)

    def saved(self) -> dict[str, list[list[str]]] | None:
        """What it holds, for :meth:`restore` (None: nothing)."""
        if not self._stopped and not self._held and not self._doubts:
            return None
        return {"stopped": [list(item) for item in self._stopped.items()],
                "doubts": [[process, *doubt] for process, doubt in self._doubts.items()],
                "held": [list(item) for item in self._held.items()]}

    def restore(self, saved: dict[str, Any] | None) -> None:
        """Go on from what :meth:`saved` gave, after the lines it was saved with."""
        self.clear()
        for process, stop in (saved or {}).get("stopped", ()):
            self._stopped[process] = stop
        for process, stop, queue_id in (saved or {}).get("doubts", ()):
            self._doubts[process] = (stop, queue_id)
        for queue_id, process in (saved or {}).get("held", ()):
            self._hold(process, queue_id)

    def clear(self) -> None:
        self._stopped.clear()
        self._receiving.clear()
        self._doubts.clear()
        self._held.clear()
        self._sessions.clear()


def _strongest(stop: str, other: str) -> str:
    return max(stop, other, key=_STOPS.index)


def _bound(tracked: OrderedDict[str, Any], key: str, limit: int) -> None:
    """``key`` made the newest of ``tracked``, the oldest forgotten past ``limit``."""
    tracked.move_to_end(key)
    if len(tracked) > limit:
        tracked.popitem(last=False)
