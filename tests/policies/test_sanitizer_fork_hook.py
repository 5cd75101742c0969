"""One fork hook for every SanitizerProcesses: an instance no longer used is collected
(a hook of its own held it for good), and a fork still waits for a child being
started, so that the forked process knows the child and lets go of it."""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref

import pytest

from postwarden_policies import sanitizer_process
from postwarden_policies.sanitizer_process import SanitizerProcesses

HANDLER = "postwarden_policies.sanitize:clean_with_nh3"
REQUEST = ('<p onclick="x">a</p>', "keep", frozenset({"http"}), True)
START_SECONDS = 0.3  # how long the child below takes to start


def test_an_instance_no_longer_used_is_collected() -> None:
    children: SanitizerProcesses[object] = SanitizerProcesses(HANDLER, max_children=1)
    assert children.run(REQUEST) is not None
    children.close()
    gone = weakref.ref(children)
    del children
    gc.collect()
    assert gone() is None


def test_a_fork_waits_for_a_child_being_started(monkeypatch: pytest.MonkeyPatch) -> None:
    starting = threading.Event()
    started: list[sanitizer_process._Child] = []

    class SlowChild(sanitizer_process._Child):
        def __init__(self, handler: str) -> None:
            starting.set()
            time.sleep(START_SECONDS)  # the fork comes meanwhile
            super().__init__(handler)
            started.append(self)

    monkeypatch.setattr(sanitizer_process, "_Child", SlowChild)
    children: SanitizerProcesses[object] = SanitizerProcesses(HANDLER, max_children=1)
    other: SanitizerProcesses[object] = SanitizerProcesses(HANDLER, max_children=1)
    runner = threading.Thread(target=children.run, args=(REQUEST,))
    runner.start()
    assert starting.wait(5)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the forked process: its parent's child known, and let go of
        try:
            [child] = started
            free = all(c._lock.acquire(blocking=False) for c in (children, other))
            forgot = child._stdin.closed and child._stdout.closed and not children._children
            os.write(write_end, f"{free} {forgot}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 100).decode()
    os.waitpid(pid, 0)
    os.close(read_end)
    runner.join()
    assert answer == "True True"
    [child] = started  # and still the parent's
    assert children._idle == [child] and not child._stdin.closed
    assert children.run(REQUEST) is not None
    children.close()
