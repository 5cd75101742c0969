"""Local submissions tempfailed pass after pass, bounded.

Mail submitted with sendmail(1) waits in Postfix's maildrop queue while the milter
tempfails it, and pickup hands it over again at each of its passes (every 60 s, and
whenever postdrop drops a new file). The maildrop queue has no lifetime: a message
that gets a 4xx every time (a rule's tempfail, an evaluation that fails on it, the
deadline) came back forever, an audit row a pass, and nobody heard of it. Its passes
are counted here, and past ``local_retry_passes`` end of message holds it instead
(Postfix's hold queue: ``postqueue -j`` lists it, ``postsuper -H`` releases it,
unchecked, as Postfix sends requeued mail to no milter, ``-d`` deletes it). A failure
at MAIL or RCPT is answered at end of message too (handler.guarded): tempfailed where it
happened, the pass was never counted.

A pass is known by its content (envelope sender, recipients, body): pickup gives each
one a new queue id, and cleanup a new Message-ID and Date where the submitter wrote
none. The counts are kept in ``spool_dir`` (:data:`FILE_NAME`), under a lock: the
``processes`` workers, each seeing some of the passes, count them together, and a
restart (a crash on that very message, say) forgets none. At most :data:`TRACKED`
messages are counted, the oldest forgotten first, and one none of whose passes came for
:data:`STALE_SECONDS` (deleted from the queue, say) is forgotten: the same content
submitted again days later (a cron job's daily report) starts from nothing. A file that
cannot be read or written counts nothing (logged): the pass is tempfailed as it would be
without a bound. One this user may not use (a run as root left it) refuses a start and
fails a check (settings._foreign_spool_files).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

from .session import Transaction

log = logging.getLogger(__name__)

TRACKED = 10_000  # messages counted at once: 44-byte records, 440 kB at most
STALE_SECONDS = 86_400.0  # pickup passes every 60 s: a day without one is another run
FILE_NAME = "local-retries"
# A content key, its tempfailed passes, the time of the last (wall clock: it outlives
# a restart); the most recent last.
_RECORD = struct.Struct("<32sId")
# The audit flag of a local submission held past local_retry_passes.
RETRIES_EXHAUSTED = "retries_exhausted"
T = TypeVar("T")
Counts = OrderedDict[bytes, tuple[int, float]]


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

    def __init__(self, passes: int, directory: Path, tracked: int = TRACKED,
                 clock: Callable[[], float] = time.time) -> None:
        self._passes = passes  # 0: no bound
        self._path = directory / FILE_NAME
        self._tracked = tracked
        self._clock = clock
        self._lock = threading.Lock()  # flock keeps processes apart, not threads

    def exhausted(self, txn: Transaction) -> int | None:
        """Count a tempfailed pass of ``txn``; how many were tempfailed, once that is
        past the bound (the pass is to be held, and the count starts again), else None."""
        if not self._passes:
            return None
        key = content_key(txn)

        def count(counts: Counts) -> int | None:
            passes = counts.pop(key, (0, 0.0))[0] + 1
            if passes > self._passes:
                return passes - 1
            counts[key] = (passes, self._clock())
            while len(counts) > self._tracked:
                counts.popitem(last=False)
            return None

        return self._update(count, None)

    def counted_key(self, txn: Transaction) -> bytes | None:
        """``txn``'s content key for :meth:`passed`, or None while no pass is counted."""
        if not self._passes:  # nothing counted: a file left from a bound before is not ours
            return None
        try:
            if not self._path.stat().st_size:  # otherwise no message pays for the hash
                return None
        except FileNotFoundError:
            return None
        except OSError:
            pass  # said by _update
        return content_key(txn)

    def passed(self, key: bytes) -> None:
        """The message of ``key`` (:meth:`counted_key`) was answered, not tempfailed: its
        passes start again."""
        self._update(lambda counts: counts.pop(key, None), None)

    def _update(self, change: Callable[[Counts], T], failed: T) -> T:
        """``change`` applied to the counts, under the lock; ``failed`` when the file
        cannot be used."""
        try:
            with self._lock, self._locked_file() as file:
                counts = _read(file, self._clock() - STALE_SECONDS)
                before = list(counts.items())
                result = change(counts)
                if list(counts.items()) != before:
                    file.seek(0)
                    file.write(b"".join(_RECORD.pack(key, *count)
                                        for key, count in counts.items()))
                    file.truncate()
                return result
        except OSError as exc:
            log.error("%s: cannot count a local submission's passes: %s", self._path,
                      exc.strerror or exc)
            return failed

    @contextmanager
    def _locked_file(self) -> Iterator[BinaryIO]:
        with open(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), "r+b") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released as it closes
            yield file


def _read(file: BinaryIO, since: float) -> Counts:
    """The counts in ``file`` with a pass ``since``; a torn last record (a crash as it was
    written) is left out."""
    data = file.read()
    data = data[: len(data) - len(data) % _RECORD.size]
    return OrderedDict((key, (passes, last)) for key, passes, last in _RECORD.iter_unpack(data)
                       if last >= since)
