"""The duplicate detector: its key, expiry, bounds, and its table shared by forked processes.

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
from typing import cast

from postwarden_milter.duplicates import NEIGHBOURHOOD, DuplicateDetector
from tests.fixtures.forked import CHILD_SECONDS, fork, in_child, reap

FIRST, DUPLICATE = 10, 11  # child exit statuses for seen() False/True


def _seen_in_child(detector: DuplicateDetector, message_id: str) -> int:
    """FIRST or DUPLICATE: what seen() said to a forked child."""
    return in_child(lambda: DUPLICATE if detector.seen(message_id, "a@x", b"body") else FIRST)


def test_duplicate_needs_same_id_sender_and_body() -> None:
    now = [0.0]
    detector = DuplicateDetector(window_seconds=60, clock=lambda: now[0])
    assert not detector.seen("<m@x>", "a@example.org", b"body1")
    assert detector.seen("<M@x>", "A@example.org", b"body1")  # case-insensitive ids
    assert detector.seen(" <m@x>\t", "a@example.org", memoryview(b"body1"))  # stripped
    assert not detector.seen("<m@x>", "mallory@example.org", b"body1")  # other sender
    assert not detector.seen("<m@x>", "a@example.org", b"body2")  # other body
    assert not detector.seen(None, "a@example.org", b"body1")  # no Message-ID: never
    # The parts are kept apart: moving characters between id and sender is another key.
    assert not detector.seen("<m@x>a", "@example.org", b"body1")
    now[0] = 59.9
    assert detector.seen("<m@x>", "a@example.org", b"body1")  # still within the window
    now[0] = 60.0
    assert not detector.seen("<m@x>", "a@example.org", b"body1")  # window passed: new again
    assert detector.seen("<m@x>", "a@example.org", b"body1")  # ... and recorded anew


def test_duplicate_table_is_bounded_and_can_be_off() -> None:
    now = [0.0]
    detector = DuplicateDetector(window_seconds=60, max_entries=2, clock=lambda: now[0])
    for n in range(3):
        now[0] = float(n)
        detector.seen(f"<{n}@x>", "a@x", b"b")
    assert not detector.seen("<0@x>", "a@x", b"b")  # evicted, oldest first
    off = DuplicateDetector(window_seconds=0)
    assert not off.enabled
    off.seen("<m@x>", "a@x", b"b")
    assert not off.seen("<m@x>", "a@x", b"b")


def test_nothing_is_hashed_when_off_or_without_message_id() -> None:
    unhashable = cast(bytes, object())  # hashing it would raise TypeError
    assert not DuplicateDetector(window_seconds=0).seen("<m@x>", "a@x", unhashable)
    on = DuplicateDetector(window_seconds=60)
    assert on.enabled
    assert not on.seen(None, "a@x", unhashable)
    assert not on.seen("", "a@x", unhashable)


def test_flood_keeps_the_newest_and_every_live_entry_while_there_is_room() -> None:
    now = [0.0]
    full = DuplicateDetector(window_seconds=1000, max_entries=16, clock=lambda: now[0])
    for n in range(16):  # exactly as many live entries as slots: none may be lost
        now[0] = float(n)
        assert not full.seen(f"<{n}@x>", "a@x", b"b")
    assert all(full.seen(f"<{n}@x>", "a@x", b"b") for n in range(16))
    flooded = DuplicateDetector(window_seconds=1000, max_entries=64, clock=lambda: now[0])
    for n in range(5000):
        now[0] = float(n)
        flooded.seen(f"<{n}@x>", "a@x", b"b")
    # Evicting an entry takes a neighbourhood of newer ones, so the newest
    # NEIGHBOURHOOD all stayed (checked newest first: a hit changes nothing).
    newest = range(4999, 4999 - NEIGHBOURHOOD, -1)
    assert all(flooded.seen(f"<{n}@x>", "a@x", b"b") for n in newest)
    assert not flooded.seen("<0@x>", "a@x", b"b")  # the oldest went


def test_expired_entry_mid_chain_does_not_hide_a_live_one() -> None:
    # Three slots, one neighbourhood: every key collides with every other.
    now = [0.0]
    detector = DuplicateDetector(window_seconds=60, max_entries=3, clock=lambda: now[0])
    assert not detector.seen("<old@x>", "a@x", b"b")  # first slot
    now[0] = 30.0
    assert not detector.seen("<live@x>", "a@x", b"b")  # a later slot
    now[0] = 70.0  # <old@x> expired, <live@x> not
    assert detector.seen("<live@x>", "a@x", b"b")
    assert not detector.seen("<new@x>", "a@x", b"b")  # takes a free or expired slot...
    assert detector.seen("<live@x>", "a@x", b"b")  # ... not the live entry's
    assert detector.seen("<new@x>", "a@x", b"b")
    assert not detector.seen("<old@x>", "a@x", b"b")  # expired is gone for good


def test_child_sees_what_the_parent_recorded_and_the_other_way() -> None:
    detector = DuplicateDetector(window_seconds=60)
    assert _seen_in_child(detector, "<from-child@x>") == FIRST
    assert detector.seen("<from-child@x>", "a@x", b"body")  # the child's record, here
    assert not detector.seen("<from-parent@x>", "a@x", b"body")
    assert _seen_in_child(detector, "<from-parent@x>") == DUPLICATE
    # Between two children of the same parent, as for two milter workers.
    assert _seen_in_child(detector, "<sibling@x>") == FIRST
    assert _seen_in_child(detector, "<sibling@x>") == DUPLICATE


def test_threads_in_two_processes_record_each_key_once() -> None:
    detector = DuplicateDetector(window_seconds=60)
    # Races are rare per key (the GIL, a short critical section), hence many
    # keys: this caught a missing cross-process lock in 25 runs out of 25, a
    # missing thread lock in about 4 runs out of 5.
    keys, threads = 20_000, 4
    start = time.monotonic() + 0.3  # all threads of both processes go through the keys together
    reading, writing = os.pipe()

    def count_firsts() -> int:
        sys.setswitchinterval(1e-6)  # interleave this process's threads as much as possible
        firsts = [0] * threads

        def work(n: int) -> None:
            time.sleep(max(0.0, start - time.monotonic()))
            for k in range(keys):
                if not detector.seen(f"<{k}@x>", "a@x", b"body"):
                    firsts[n] += 1

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        os.write(writing, f"{sum(firsts)}\n".encode())
        return 0

    pids = [fork(count_firsts), fork(count_firsts)]
    os.close(writing)
    with os.fdopen(reading) as results:
        assert [reap(pid) for pid in pids] == [0, 0]
        counts = [int(line) for line in results]
    assert len(counts) == 2 and sum(counts) == keys, counts  # one "first" a key, overall


def test_worker_killed_inside_seen_does_not_wedge_the_others() -> None:
    die = [False]

    def clock() -> float:  # called with the table locked
        if die[0]:
            os.kill(os.getpid(), signal.SIGKILL)
        return time.monotonic()

    detector = DuplicateDetector(window_seconds=60, clock=clock)

    def killed_while_locked() -> int:
        die[0] = True
        detector.seen("<m@x>", "a@x", b"body")
        return 0  # not reached

    assert in_child(killed_while_locked) == -signal.SIGKILL
    # The kernel dropped the dead process's lock: another worker gets through.
    assert in_child(lambda: FIRST if not detector.seen("<n@x>", "a@x", b"body") else 0,
                     seconds=5.0) == FIRST


def test_fork_while_a_thread_is_inside_seen() -> None:
    parent = os.getpid()
    inside, leave = threading.Event(), threading.Event()

    def clock() -> float:  # called with the table locked: the parent's thread waits there
        if os.getpid() == parent and not leave.is_set():
            inside.set()
            leave.wait(CHILD_SECONDS)
        return time.monotonic()

    detector = DuplicateDetector(window_seconds=60, clock=clock)
    holder = threading.Thread(target=detector.seen, args=("<held@x>", "a@x", b"body"))
    holder.start()
    try:
        assert inside.wait(CHILD_SECONDS)
        with warnings.catch_warnings():  # Python 3.12+ warns of fork() with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = fork(lambda: DUPLICATE if detector.seen("<held@x>", "a@x", b"body") else FIRST)
        time.sleep(0.1)  # the child now waits for the parent's lock...
    finally:
        leave.set()
        holder.join()
    # ... and gets it: its copy of the thread lock, taken at the fork, was renewed.
    assert reap(pid, seconds=5.0) == DUPLICATE
