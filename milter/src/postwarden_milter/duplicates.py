"""Re-delivery detection: same Message-ID, envelope sender, recipients and body.

A bare Message-ID match is never enough (the sender chooses it), so the key
also holds the envelope sender, the transaction's recipients and the body, by
SHA-256. The recipients tell a re-delivery from the next part of a message a
sending MTA split into several transactions (its per-destination recipient
limit, or our own 452 past ``max_recipients``): same Message-ID, sender and
body, other recipients.

Looking a key up and recording it are separate steps: the policy needs the
answer before its verdict, and a message is recorded only once that verdict
took it (see the handler). A refused or tempfailed message was not
delivered, so the sender's retry is no re-delivery. Entries expire after the
window, counted from the first recording.

The milter may run as several worker processes forked from one parent, and a
message first seen by one worker must be a duplicate when it comes again to
another. So the table lives in an anonymous shared mapping made by the
constructor: a detector built before ``os.fork()`` is one table for the
parent and every child. It holds no Python objects, only fixed-size slots: 16
bytes of a keyed SHA-256 over the four parts, and the first-seen
``time.monotonic()`` (system-wide on Linux, so times compare across processes).
A detector for one process only (``shared=False``: the milter without worker
processes) takes no lock between processes: the record lock cost two system
calls per look-up and per record, each giving up the GIL and waiting to take it
back behind the other mail threads.

A delivered message takes two slots: its key, and the id the milter wrote into it
(:meth:`DuplicateDetector.issued_key`), which tells the message passing the milter
again from a sender's re-delivery.

It is bounded by construction: ``max_entries`` slots, fixed when made. A key
may sit only in the ``NEIGHBOURHOOD`` slots from its home slot on (open
addressing); a lookup checks all of them, and an insert takes the oldest
slot there (an empty one counts as oldest, then expired ones), so a flood of
unique messages evicts the oldest entries, approximately, and cannot grow
memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence

from .session import fold_case

# Two slots per delivered message (its key, and the id this milter wrote into it), so
# 200,000 messages are remembered: 24 bytes a slot, 9.6 MB shared by all workers.
MAX_ENTRIES = 400_000
NEIGHBOURHOOD = 16  # slots a key may occupy, from its home slot on
DIGEST_SIZE = 16  # bytes of keyed SHA-256 kept: a collision needs ~2**64 tries
_TIME_SIZE = 8  # float64
_EMPTY = float("-inf")  # the first-seen time of an empty slot: older than anything

# Detectors alive in this process, to renew their thread locks in a forked child.
_live: weakref.WeakSet[DuplicateDetector] = weakref.WeakSet()


class DuplicateDetector:
    def __init__(
        self,
        window_seconds: float,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        *,
        shared: bool = True,
    ) -> None:
        """``shared``: the table is used by processes forked after this (False: by
        this process only, whose threads it still keeps apart)."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._window = window_seconds
        self._clock = clock
        if not self.enabled:
            return  # no table, no locks: key() gives None, so nothing is looked up
        self._neighbourhood = min(NEIGHBOURHOOD, max_entries)
        # Homes stop short of the end so a neighbourhood never wraps: one slice each.
        self._homes = max_entries - self._neighbourhood + 1
        # Keyed so that nobody can aim message ids at one neighbourhood and
        # flush a chosen entry out; made here, before any fork, so shared too.
        self._secret = os.urandom(16)
        # Layout: all first-seen times (float64), then all digests.
        self._digest_base = max_entries * _TIME_SIZE
        self._map = mmap.mmap(-1, max_entries * (_TIME_SIZE + DIGEST_SIZE))  # MAP_SHARED
        self._times = memoryview(self._map)[: self._digest_base].cast("d")
        self._map[: self._digest_base] = struct.pack("d", _EMPTY) * max_entries
        # Cross-process lock: a POSIX record lock on a memfd that every child
        # inherits. Record locks belong to a process and the kernel drops them
        # when it dies, so a worker killed holding it (OOM killer, a crash)
        # cannot wedge the others, as a semaphore-based lock would. They do not
        # exclude threads of one process, hence the thread lock taken first.
        self._lock_fd: int | None = None
        if shared:
            self._lock_fd = os.memfd_create("postwarden-duplicates-lock")
            weakref.finalize(self, os.close, self._lock_fd)
        self._thread_lock = threading.Lock()
        _live.add(self)

    @property
    def enabled(self) -> bool:
        return self._window > 0

    def key(self, message_id: str | None, sender: str, recipients: Iterable[str],
            body: bytes | memoryview, smtputf8: bool = False) -> bytes | None:
        """The message's key; None when the detector is off or the message has no
        Message-ID, in which case the body is not hashed (no other message pays for it).

        Keyed, truncated SHA-256 over the parts, each preceded by its length (and
        the recipients by their count) so that none can pass for another; the sender
        and recipients case-folded as the transaction's recipients are (Postfix keeps
        one of two spellings: session.recipient_key; ``smtputf8``, as
        Transaction.smtputf8 says), the recipients sorted and deduplicated, as their
        order means nothing.
        surrogatepass takes header text with lone surrogates from undecodable bytes.
        """
        if not self.enabled or not message_id:
            return None
        addresses = sorted({fold_case(address, smtputf8) for address in recipients})
        digest = hashlib.sha256(self._secret + len(addresses).to_bytes(8, "little"))
        message = message_id.strip().lower().encode("utf-8", "surrogatepass")
        for data in (message, fold_case(sender, smtputf8), *addresses):
            digest.update(len(data).to_bytes(8, "little") + data)
        digest.update(body)
        return digest.digest()[:DIGEST_SIZE]

    def issued_key(self, uid: str) -> bytes:
        """The key under which the milter records an id it wrote into a delivered message
        (its id header): a message carrying it comes from this milter's own earlier pass,
        and a sender cannot guess one. Only for an enabled detector."""
        digest = hashlib.sha256(self._secret + b"\0issued\0" + uid.encode("utf-8", "replace"))
        return digest.digest()[:DIGEST_SIZE]

    def seen(self, key: bytes) -> bool:
        """Whether ``key`` was recorded within the window; records nothing."""
        with self._locked() as now:
            _home, times, i = self._find(key)
            return i >= 0 and times[i] > now - self._window

    def record(self, *keys: bytes) -> None:
        """Remember ``keys`` as delivered now (under one lock); a live entry keeps its
        first time."""
        with self._locked() as now:
            for key in keys:
                self._record(key, now)

    def _record(self, key: bytes, now: float) -> None:
        home, times, i = self._find(key)
        if i >= 0 and times[i] > now - self._window:
            return
        if i < 0:  # else its own expired entry: one copy of a key, at most
            i = times.index(min(times))  # empty, else expired, else oldest
        slot = home + i
        base = self._digest_base
        # Emptied first: a worker killed before the time is written leaves an
        # empty slot, never the new key with the evicted entry's live time.
        self._times[slot] = _EMPTY
        self._map[base + slot * DIGEST_SIZE: base + (slot + 1) * DIGEST_SIZE] = key
        self._times[slot] = now

    @contextlib.contextmanager
    def _locked(self) -> Iterator[float]:
        """Hold the table against other threads and processes; gives the time now."""
        with self._thread_lock:  # record locks exclude processes, not threads
            if self._lock_fd is None:
                yield self._clock()
                return
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield self._clock()
            finally:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)

    def _find(self, key: bytes) -> tuple[int, Sequence[float], int]:
        """With the table held: the key's home slot, the first-seen times of its
        neighbourhood, and the key's index there (-1 when absent)."""
        home = int.from_bytes(key[:8], "little") % self._homes
        end = home + self._neighbourhood
        base = self._digest_base
        digests = self._map[base + home * DIGEST_SIZE: base + end * DIGEST_SIZE]
        # The whole neighbourhood is searched: an empty or expired slot before the
        # key's slot proves nothing, since inserts take any slot of it.
        at = digests.find(key)
        while at > 0 and at % DIGEST_SIZE:  # straddling two digests
            at = digests.find(key, at + 1)
        return home, self._times[home:end].tolist(), at // DIGEST_SIZE if at >= 0 else -1


def _renew_thread_locks() -> None:
    # A thread of the parent may have held a thread lock at the fork; in the
    # child nobody would release that copy. Record locks are not inherited.
    for detector in list(_live):
        detector._thread_lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_thread_locks)
