"""The duplicate detector: its key, look-up apart from recording, expiry, bounds, and its
table shared by forked processes.

The cross-process tests fork real children (tests/fixtures/forked.py): a
wedged lock fails the test, not the run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import cast

from postwarden_milter.duplicates import NEIGHBOURHOOD, DuplicateDetector
from tests.fixtures.forked import CHILD_SECONDS, fork, in_child, reap
from tests.fixtures.postgres import wait_until

FIRST, DUPLICATE = 10, 11  # child exit statuses for deliver() False/True


def deliver(detector: DuplicateDetector, message_id: str | None, sender: str,
            body: bytes | memoryview, recipients: tuple[str, ...] = ("b@x",)) -> bool:
    """Look the message up, then record it, as the handler does for a delivered one:
    whether it was a re-delivery."""
    key = detector.key(message_id, sender, recipients, body)
    if key is None:
        return False
    seen = detector.seen(key)
    detector.record(key)
    return seen


def _seen_in_child(detector: DuplicateDetector, message_id: str) -> int:
    """FIRST or DUPLICATE: what deliver() said to a forked child."""
    return in_child(lambda: DUPLICATE if deliver(detector, message_id, "a@x", b"body") else FIRST)


def test_duplicate_needs_same_id_sender_and_body() -> None:
    now = [0.0]
    detector = DuplicateDetector(window_seconds=60, clock=lambda: now[0])
    assert not deliver(detector, "<m@x>", "a@example.org", b"body1")
    assert deliver(detector, "<M@x>", "A@example.org", b"body1")  # case-insensitive ids
    assert deliver(detector, " <m@x>\t", "a@example.org", memoryview(b"body1"))  # stripped
    assert not deliver(detector, "<m@x>", "mallory@example.org", b"body1")  # other sender
    assert not deliver(detector, "<m@x>", "a@example.org", b"body2")  # other body
    assert not deliver(detector, None, "a@example.org", b"body1")  # no Message-ID: never
    # The parts are kept apart: moving characters between id and sender is another key.
    assert not deliver(detector, "<m@x>a", "@example.org", b"body1")
    now[0] = 59.9
    assert deliver(detector, "<m@x>", "a@example.org", b"body1")  # still within the window
    now[0] = 60.0
    assert not deliver(detector, "<m@x>", "a@example.org", b"body1")  # window passed: new again
    assert deliver(detector, "<m@x>", "a@example.org", b"body1")  # ... and recorded anew


def test_looking_up_records_nothing() -> None:
    now = [0.0]
    detector = DuplicateDetector(window_seconds=60, clock=lambda: now[0])
    key = detector.key("<m@x>", "a@x", ["b@x"], b"body")
    assert key is not None
    assert not detector.seen(key)
    assert not detector.seen(key)  # a refused message's retry: still no re-delivery
    detector.record(key)
    assert detector.seen(key)
    now[0] = 50.0
    detector.record(key)  # delivered again: the window still runs from the first time
    now[0] = 60.0
    assert not detector.seen(key)


def test_the_recipients_are_part_of_the_key() -> None:
    detector = DuplicateDetector(window_seconds=60)

    def key(*recipients: str) -> bytes | None:
        return detector.key("<m@x>", "a@x", recipients, b"body")

    # A message split into transactions by recipient: each part is another key...
    assert len({key("r1@x", "r2@x"), key("r3@x"), key("r1@x", "r2@x", "r3@x")}) == 3
    # ... while their order, case and repetition mean nothing.
    assert key("R2@x", "r1@x", "r1@x") == key("r1@x", "r2@x")
    upper, lower = (detector.key("<m@x>", "a@x", [r], b"body", smtputf8=True)
                    for r in ("STRASSE@x", "stra\u00dfe@x"))
    assert upper == lower  # Unicode case with SMTPUTF8, as Postfix then folds it
    assert key("STRASSE@x") != key("stra\u00dfe@x")  # else ASCII letters only
    # The parts are kept apart: recipients cannot pass for one another or the sender.
    assert key("r1@xr2@x") != key("r1@x", "r2@x")
    assert detector.key("<m@x>", "a@xb@x", [], b"body") != key("b@x")


def test_duplicate_table_is_bounded_and_can_be_off() -> None:
    now = [0.0]
    detector = DuplicateDetector(window_seconds=60, max_entries=2, clock=lambda: now[0])
    for n in range(3):
        now[0] = float(n)
        deliver(detector, f"<{n}@x>", "a@x", b"b")
    assert not deliver(detector, "<0@x>", "a@x", b"b")  # evicted, oldest first
    off = DuplicateDetector(window_seconds=0)
    assert not off.enabled
    deliver(off, "<m@x>", "a@x", b"b")
    assert not deliver(off, "<m@x>", "a@x", b"b")


def test_nothing_is_hashed_when_off_or_without_message_id() -> None:
    unhashable = cast(bytes, object())  # hashing it would raise TypeError
    assert DuplicateDetector(window_seconds=0).key("<m@x>", "a@x", ["b@x"], unhashable) is None
    on = DuplicateDetector(window_seconds=60)
    assert on.enabled
    assert on.key(None, "a@x", ["b@x"], unhashable) is None
    assert on.key("", "a@x", ["b@x"], unhashable) is None


def test_flood_keeps_the_newest_and_every_live_entry_while_there_is_room() -> None:
    now = [0.0]
    full = DuplicateDetector(window_seconds=1000, max_entries=16, clock=lambda: now[0])
    for n in range(16):  # exactly as many live entries as slots: none may be lost
        now[0] = float(n)
        assert not deliver(full, f"<{n}@x>", "a@x", b"b")
    assert all(deliver(full, f"<{n}@x>", "a@x", b"b") for n in range(16))
    flooded = DuplicateDetector(window_seconds=1000, max_entries=64, clock=lambda: now[0])
    for n in range(5000):
        now[0] = float(n)
        deliver(flooded, f"<{n}@x>", "a@x", b"b")
    # Evicting an entry takes a neighbourhood of newer ones, so the newest
    # NEIGHBOURHOOD all stayed (checked newest first: a hit changes nothing).
    newest = range(4999, 4999 - NEIGHBOURHOOD, -1)
    assert all(deliver(flooded, f"<{n}@x>", "a@x", b"b") for n in newest)
    assert not deliver(flooded, "<0@x>", "a@x", b"b")  # the oldest went


def test_expired_entry_mid_chain_does_not_hide_a_live_one() -> None:
    # Three slots, one neighbourhood: every key collides with every other.
    now = [0.0]
    detector = DuplicateDetector(window_seconds=60, max_entries=3, clock=lambda: now[0])
    assert not deliver(detector, "<old@x>", "a@x", b"b")  # first slot
    now[0] = 30.0
    assert not deliver(detector, "<live@x>", "a@x", b"b")  # a later slot
    now[0] = 70.0  # <old@x> expired, <live@x> not
    assert deliver(detector, "<live@x>", "a@x", b"b")
    assert not deliver(detector, "<new@x>", "a@x", b"b")  # takes a free or expired slot...
    assert deliver(detector, "<live@x>", "a@x", b"b")  # ... not the live entry's
    assert deliver(detector, "<new@x>", "a@x", b"b")
    assert not deliver(detector, "<old@x>", "a@x", b"b")  # expired is gone for good


def test_child_sees_what_the_parent_recorded_and_the_other_way() -> None:
    detector = DuplicateDetector(window_seconds=60)
    assert _seen_in_child(detector, "<from-child@x>") == FIRST
    assert deliver(detector, "<from-child@x>", "a@x", b"body")  # the child's record, here
    assert not deliver(detector, "<from-parent@x>", "a@x", b"body")
    assert _seen_in_child(detector, "<from-parent@x>") == DUPLICATE
    # Between two children of the same parent, as for two milter workers.
    assert _seen_in_child(detector, "<sibling@x>") == FIRST
    assert _seen_in_child(detector, "<sibling@x>") == DUPLICATE


def test_threads_in_two_processes_record_each_key_once() -> None:
    # Keys made to order: key i's home slot is 2 * i, so that every neighbourhood
    # always keeps a free slot (15 keys at most can reach its 16): locked, no key
    # is ever evicted. Each thread of both processes records all keys, each a few
    # keys apart from the others, so that they insert different keys into the
    # same slots together: unlocked, one overwrites another or a key lands twice.
    # Races are rare (the GIL, a short critical section), hence many keys: this
    # caught a missing cross-process lock in 5 runs of 5, a missing thread lock in 2.
    keys, threads = 20_000, 4
    detector = DuplicateDetector(window_seconds=60, max_entries=2 * keys + NEIGHBOURHOOD)
    made = [(2 * i).to_bytes(8, "little") + i.to_bytes(8, "little") for i in range(keys)]
    start = time.monotonic() + 0.3  # all threads of both processes go through the keys together

    def record_all(process: int) -> int:
        sys.setswitchinterval(1e-6)  # interleave this process's threads as much as possible

        def work(offset: int) -> None:
            time.sleep(max(0.0, start - time.monotonic()))
            for i in range(keys):
                key = made[(i + offset) % keys]
                detector.seen(key)
                detector.record(key)

        pool = [threading.Thread(target=work, args=(process * threads + n,))
                for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return 0

    pids = [fork(lambda: record_all(0)), fork(lambda: record_all(1))]
    assert [reap(pid) for pid in pids] == [0, 0]
    assert sum(not detector.seen(key) for key in made) == 0  # none lost
    assert sum(t != float("-inf") for t in detector._times) == keys  # none twice


def test_worker_killed_inside_seen_does_not_wedge_the_others() -> None:
    die = [False]

    def clock() -> float:  # called with the table locked
        if die[0]:
            os.kill(os.getpid(), signal.SIGKILL)
        return time.monotonic()

    detector = DuplicateDetector(window_seconds=60, clock=clock)

    def killed_while_locked() -> int:
        die[0] = True
        deliver(detector, "<m@x>", "a@x", b"body")
        return 0  # not reached

    assert in_child(killed_while_locked) == -signal.SIGKILL
    # The kernel dropped the dead process's lock: another worker gets through.
    assert in_child(lambda: FIRST if not deliver(detector, "<n@x>", "a@x", b"body") else 0,
                     seconds=5.0) == FIRST


def _record_locks(pid: int) -> list[list[str]]:
    """Process ``pid``'s POSIX record locks in /proc/locks, held and waited for ("->")."""
    return [fields for fields in map(str.split, Path("/proc/locks").read_text().splitlines())
            if "POSIX" in fields[1:3] and str(pid) in fields[4:6]]


def _waits_for_the_table(pid: int, detector: DuplicateDetector) -> bool:
    """Whether process ``pid`` waits for the table's record lock: /proc/locks lists a
    blocked request as "->", with its pid and its file's major:minor:inode."""
    assert detector._lock_fd is not None
    held = os.fstat(detector._lock_fd)
    lock_file = f"{os.major(held.st_dev):02x}:{os.minor(held.st_dev):02x}:{held.st_ino}"
    return any(fields[1:2] == ["->"] and fields[5:7] == [str(pid), lock_file]
               for fields in _record_locks(pid))


def test_one_process_detector_takes_no_record_lock() -> None:
    locks_inside: list[list[list[str]]] = []

    def clock() -> float:  # called with the table locked
        locks_inside.append(_record_locks(os.getpid()))
        return time.monotonic()

    shared = DuplicateDetector(window_seconds=60, clock=clock)
    assert not deliver(shared, "<m@x>", "a@x", b"body")
    alone = DuplicateDetector(window_seconds=60, clock=clock, shared=False)
    assert not deliver(alone, "<m@x>", "a@x", b"body")
    assert deliver(alone, "<m@x>", "a@x", b"body")
    assert [len(locks) for locks in locks_inside] == [1, 1, 0, 0, 0, 0]


def test_fork_while_a_thread_is_inside_seen() -> None:
    inside, leave = threading.Event(), threading.Event()

    def clock() -> float:  # called with the table locked: the holder waits there
        if threading.current_thread() is holder and not leave.is_set():
            inside.set()
            leave.wait(CHILD_SECONDS)
        return time.monotonic()

    detector = DuplicateDetector(window_seconds=60, clock=clock)
    key = detector.key("<held@x>", "a@x", ["b@x"], b"body")
    assert key is not None
    holder = threading.Thread(target=detector.seen, args=(key,))
    # Recorded first: the child's answer cannot depend on whether it locks the table
    # before or after the holder's thread (a look-up, then a record, in two locks).
    detector.record(key)
    holder.start()
    try:
        assert inside.wait(CHILD_SECONDS)
        with warnings.catch_warnings():  # Python 3.12+ warns of fork() with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = fork(lambda: DUPLICATE if detector.seen(key) else FIRST)
        # Past its copy of the thread lock, taken at the fork (renewed), the child
        # waits for the parent's record lock...
        waited = wait_until(lambda: _waits_for_the_table(pid, detector), timeout=CHILD_SECONDS)
    finally:
        leave.set()
        holder.join()
    # ... and gets it once the holder lets go.
    assert reap(pid, seconds=5.0) == DUPLICATE
    assert waited
