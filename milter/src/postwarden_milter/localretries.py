"""Local submissions tempfailed pass after pass, bounded.

Mail submitted with sendmail(1) waits in Postfix's maildrop queue while the milter
tempfails it, and pickup hands it over again at each of its passes (every 60 s, and
whenever postdrop drops a new file). The maildrop queue has no lifetime: a message
that gets a 4xx every time (a rule's tempfail, an evaluation that fails on it, the
deadline) came back forever, an audit row a pass, and nobody heard of it. Its passes
are counted here, and past ``local_retry_passes`` end of message holds it instead
(Postfix's hold queue: ``postqueue -j`` lists it, ``postsuper -H`` releases it,
unchecked, as Postfix sends requeued mail to no milter, ``-d`` deletes it).

A pass is known by its content (envelope sender, recipients, body): pickup gives each
one a new queue id, and cleanup a new Message-ID and Date where the submitter wrote
none. The counts are per process (each of ``processes`` workers counts the passes it
sees) and forgotten at a restart, for at most :data:`TRACKED` messages, the oldest
forgotten first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from .session import Transaction

TRACKED = 10_000  # messages counted at once: 32-byte keys, well under 2 MB
# The audit flag of a local submission held past local_retry_passes.
RETRIES_EXHAUSTED = "retries_exhausted"


def content_key(txn: Transaction) -> bytes:
    """What every pass of one maildrop file has in common: its envelope and body."""
    digest = hashlib.sha256()
    for address in (txn.sender, *txn.recipients):
        data = address.encode("utf-8", "surrogateescape")
        digest.update(len(data).to_bytes(8, "little") + data)
    digest.update(txn.raw_message()[len(txn.header_bytes) + 2:])
    return digest.digest()


class LocalRetries:
    """How many passes of each local submission were tempfailed in a row."""

    def __init__(self, passes: int, tracked: int = TRACKED) -> None:
        self._passes = passes  # 0: no bound
        self._tracked = tracked
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def exhausted(self, txn: Transaction) -> int | None:
        """Count a tempfailed pass of ``txn``; how many were tempfailed, once that is
        past the bound (the pass is to be held, and the count starts again), else None."""
        if not self._passes:
            return None
        key = content_key(txn)
        with self._lock:
            count = self._counts.pop(key, 0) + 1
            if count > self._passes:
                return count - 1
            self._counts[key] = count
            while len(self._counts) > self._tracked:
                self._counts.popitem(last=False)
        return None

    def passed(self, txn: Transaction) -> None:
        """``txn`` was not tempfailed: the passes of its message start again."""
        if self._counts:  # otherwise no message pays for the hash
            with self._lock:
                self._counts.pop(content_key(txn), None)
