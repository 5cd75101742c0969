"""The parts of several worker processes that need no running milter: each worker's
share of the milter-wide bounds, the spools of workers that no longer exist, and
the supervisor's answers to a worker that ended or cannot be started."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from postwarden_milter import supervisor as supervisor_module
from postwarden_milter.app import EXIT_CONFIG, audit_spool
from postwarden_milter.errors import StartupError
from postwarden_milter.settings import MilterSettings
from postwarden_milter.spool import (
    SPOOL_NAME,
    AuditSpool,
    SpoolBudget,
    adopt_orphans,
    spool_name,
)
from postwarden_milter.supervisor import STEADY_SECONDS, Supervisor, _Slot, worker_settings
from postwarden_policies.systemd_notify import SystemdNotifier

NO_SYSTEMD = SystemdNotifier(None)


def test_each_worker_gets_its_share_of_the_bounds() -> None:
    settings = MilterSettings(processes=3, max_concurrency=64, audit_queue_size=10_000,
                              spool_max_bytes=900)
    shares = [worker_settings(settings, index) for index in range(3)]
    # The remainder goes to the first: together they hold the bounds, no more, no less.
    assert [(s.max_concurrency, s.audit_queue_size) for s in shares] == [
        (22, 3334), (21, 3333), (21, 3333)]
    # Everything else is the milter's, unchanged (spool_max_bytes bounds their
    # spools together: test_spool_duplicates_metrics.py).
    for share in shares:
        assert dataclasses.replace(share, max_concurrency=64, audit_queue_size=10_000) == settings
    tight = [worker_settings(MilterSettings(processes=4, max_concurrency=4), index)
             for index in range(4)]
    assert [share.max_concurrency for share in tight] == [1, 1, 1, 1]  # below: refused


def test_the_workers_share_one_spool_budget_and_one_duplicate_table(tmp_path: Path) -> None:
    settings = MilterSettings(processes=2, spool_dir=tmp_path, spool_max_bytes=900)
    supervisor = Supervisor(settings, NO_SYSTEMD)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        first, second = (supervisor._worker(slot, theirs, os.getpid())
                         for slot in supervisor._slots)
        assert first.spool_budget is second.spool_budget
        assert first.duplicates is second.duplicates
        assert first.spool_budget.max_bytes == 900  # not split: test_spool_duplicates_metrics
        spool = audit_spool(worker_settings(settings, 1), second)
        assert spool.budget is second.spool_budget and spool.path == tmp_path / spool_name(1)


def test_the_first_worker_keeps_the_single_process_spool() -> None:
    assert spool_name(0) == SPOOL_NAME
    assert spool_name(2) == "audit-spool-2.jsonl"


def test_spools_of_workers_gone_are_appended_to_the_first(tmp_path: Path) -> None:
    (tmp_path / SPOOL_NAME).write_bytes(b'{"a": 0}\n')
    (tmp_path / spool_name(1)).write_bytes(b'{"a": 1}\n')  # a worker that still exists
    (tmp_path / spool_name(2)).write_bytes(b'{"a": 2}\n{"torn')  # gone, cut by a crash
    (tmp_path / spool_name(3)).write_bytes(b"")
    # How far a replay of each got: void for one appended to the first's, replayed there.
    (tmp_path / f"{spool_name(1)}.replayed").write_text("9 kept\n")
    (tmp_path / f"{spool_name(2)}.replayed").write_text("9 void\n")
    adopt_orphans(tmp_path, workers=2)
    assert (tmp_path / SPOOL_NAME).read_bytes() == b'{"a": 0}\n{"a": 2}\n'
    assert (tmp_path / spool_name(1)).read_bytes() == b'{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [SPOOL_NAME, spool_name(1), f"{spool_name(1)}.replayed"])
    assert AuditSpool(tmp_path, SpoolBudget(10**6)).size == len(b'{"a": 0}\n{"a": 2}\n')


def test_spools_adopted_are_not_glued_onto_a_torn_last_line(tmp_path: Path) -> None:
    (tmp_path / SPOOL_NAME).write_bytes(b'{"a": 0}\n{"to')  # the first worker crashed too
    (tmp_path / spool_name(1)).write_bytes(b'{"a": 1}\n')
    adopt_orphans(tmp_path, workers=1)
    assert (tmp_path / SPOOL_NAME).read_bytes() == b'{"a": 0}\n{"a": 1}\n'


# Adopts the spools in argv[1], killed (SIGKILL) at argv[2]: "mid-copy", once the first
# of the orphan's lines is appended, or "copied", before the orphan is removed.
ADOPT_KILLED = """
import os, signal, sys
from pathlib import Path
from postwarden_milter import spool
def killed(*args):
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[2] == "mid-copy":
    spool.COPY_CHUNK = 9  # one line
    real_write = os.write
    writes = []
    def write(fd, data):
        writes.append(fd)
        return killed() if len(writes) == 2 else real_write(fd, data)
    os.write = write
else:
    os.unlink = killed
spool.adopt_orphans(Path(sys.argv[1]), workers=1)
"""


@pytest.mark.parametrize("when", ["mid-copy", "copied"])
def test_a_start_killed_while_adopting_a_spool_adds_no_event_twice(
        tmp_path: Path, when: str) -> None:
    """Without a database the spool is the audit log: the next start appended the whole
    orphan again, the lines copied before the kill twice in the log."""
    (tmp_path / SPOOL_NAME).write_bytes(b'{"a": 0}\n')
    (tmp_path / spool_name(1)).write_bytes(b'{"a": 1}\n{"a": 2}\n')
    killed = subprocess.run([sys.executable, "-c", ADOPT_KILLED, str(tmp_path), when],
                            check=False, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / SPOOL_NAME).read_bytes() != b'{"a": 0}\n'  # some of it copied
    adopt_orphans(tmp_path, workers=1)
    assert (tmp_path / SPOOL_NAME).read_bytes() == b'{"a": 0}\n{"a": 1}\n{"a": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [SPOOL_NAME]


# Peak memory (kB) that adopting the spool at argv[1] added, in a process of its own
# (VmHWM: ru_maxrss would start at the peak of the process that forked it).
ADOPT_MEMORY = """
import re, sys
from pathlib import Path
from postwarden_milter.spool import adopt_orphans
def peak():
    return int(re.search(r"VmHWM:\\s*(\\d+)", Path("/proc/self/status").read_text())[1])
before = peak()
adopt_orphans(Path(sys.argv[1]), workers=1)
print(peak() - before)
"""


def test_a_spool_of_a_worker_gone_is_appended_in_bounded_memory(tmp_path: Path) -> None:
    """`processes` lowered after an outage: the leftover spool may be spool_max_bytes
    (1 GiB by default), and was read whole into memory at the start."""
    (tmp_path / SPOOL_NAME).write_bytes(b'{"a": 0}\n')
    line = b'{"a": 1}' + b" " * 1015 + b"\n"
    with (tmp_path / spool_name(1)).open("wb") as orphan:
        for _ in range(64):  # 64 MiB
            orphan.write(line * 1024)
    grown = subprocess.run([sys.executable, "-c", ADOPT_MEMORY, str(tmp_path)], check=True,
                           capture_output=True, text=True, timeout=60).stdout
    assert int(grown) < 16 * 1024
    assert (tmp_path / SPOOL_NAME).stat().st_size == 9 + 64 * 1024**2
    assert not (tmp_path / spool_name(1)).exists()


def test_a_spool_of_a_worker_gone_that_cannot_be_appended_stays_and_stops_no_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full filesystem stopped the start with a traceback (and the unit's every retry
    while it stayed full), where a journal that cannot be spooled stays for later."""
    os.symlink("/dev/full", tmp_path / SPOOL_NAME)  # every write: ENOSPC
    (tmp_path / spool_name(1)).write_bytes(b'{"a": 1}\n')
    adopt_orphans(tmp_path, workers=1)
    assert (f"audit spool {spool_name(1)} not appended to {SPOOL_NAME} (No space left on "
            "device): kept for the next start") in caplog.text
    (tmp_path / SPOOL_NAME).unlink()  # room again
    adopt_orphans(tmp_path, workers=1)
    assert (tmp_path / SPOOL_NAME).read_bytes() == b'{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [SPOOL_NAME]


def test_one_process_adopts_every_worker_spool(tmp_path: Path) -> None:
    (tmp_path / spool_name(1)).write_bytes(b'{"a": 1}\n')
    adopt_orphans(tmp_path, workers=1)
    assert (tmp_path / SPOOL_NAME).read_bytes() == b'{"a": 1}\n'


def test_exit_2_stops_the_milter_only_as_a_first_worker_starts(tmp_path: Path) -> None:
    """A configuration error at start stops everything; the same exit code from a worker
    that has served for a while (libmilter failing days later) only gets it replaced."""
    supervisor = Supervisor(MilterSettings(processes=2, spool_dir=tmp_path), NO_SYSTEMD)
    starting, served = _Slot(0, pid=1, started=time.monotonic()), \
        _Slot(1, pid=2, started=time.monotonic() - STEADY_SECONDS - 1)
    supervisor._ended(served, EXIT_CONFIG)
    assert supervisor._exit_code == 0 and served.restart_at is not None
    supervisor._ended(starting, EXIT_CONFIG)
    assert supervisor._exit_code == EXIT_CONFIG


def no_fork() -> int:
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def test_a_worker_the_system_cannot_fork_at_start_stops_the_milter_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 1, which systemd restarts: the system may have a process to spare by then.
    It was exit 2, the invalid-settings status the unit does not restart."""
    supervisor = Supervisor(MilterSettings(processes=2, spool_dir=tmp_path,
                                           milter_socket=f"unix:{tmp_path}/milter.sock"),
                            NO_SYSTEMD)
    monkeypatch.setattr(supervisor_module.os, "fork", no_fork)
    with pytest.raises(StartupError) as refused:
        supervisor._supervise()
    assert str(refused.value) == \
        "cannot start worker process 0: Resource temporarily unavailable"
    assert refused.value.exit_status == 1


def test_a_stop_during_start_forks_no_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM while the parent checks the schema or opens the socket: it forked every
    worker (each starting its threads, pool and spool) only to stop them."""
    supervisor = Supervisor(MilterSettings(processes=2, spool_dir=tmp_path,
                                           milter_socket=f"unix:{tmp_path}/milter.sock"),
                            NO_SYSTEMD)
    monkeypatch.setattr(supervisor_module.os, "fork", no_fork)
    caplog.set_level(logging.INFO, supervisor_module.__name__)
    supervisor._signals.put(signal.SIGHUP)
    supervisor._signals.put(signal.SIGTERM)
    supervisor._supervise()
    assert supervisor._exit_code == 0
    # Not "starting 2 worker processes" first: none starts.
    assert [record.getMessage() for record in caplog.records
            if record.name == supervisor_module.__name__] == [
        "SIGTERM: stopping before the workers start", "postwarden milter stopped"]


def test_a_reload_during_start_waits_for_the_workers(tmp_path: Path) -> None:
    supervisor = Supervisor(MilterSettings(processes=2, spool_dir=tmp_path), NO_SYSTEMD)
    supervisor._signals.put(signal.SIGHUP)
    assert not supervisor._stopped_while_starting()
    assert supervisor._signals.take() == (["SIGHUP"], None)  # for _watch to pass on


def test_a_worker_the_system_cannot_fork_is_tried_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No memory or process left as a dead worker is replaced: the others keep serving,
    the start is tried again after the next pause, and nothing leaks."""
    supervisor = Supervisor(MilterSettings(processes=2, spool_dir=tmp_path,
                                           milter_socket=f"unix:{tmp_path}/milter.sock"),
                            NO_SYSTEMD)
    slot = supervisor._slots[1]
    slot.first, slot.restart_at = False, time.monotonic() - 1
    monkeypatch.setattr(supervisor_module.os, "fork", no_fork)
    pairs: list[tuple[socket.socket, socket.socket]] = []

    def recorded_socketpair() -> tuple[socket.socket, socket.socket]:
        pair = real_socketpair()
        if threading.current_thread() is threading.main_thread():  # the supervisor's
            pairs.append(pair)
        return pair

    real_socketpair = socket.socketpair
    monkeypatch.setattr(supervisor_module.socket, "socketpair", recorded_socketpair)
    assert supervisor._watch()  # still running
    assert supervisor._exit_code == 0 and slot.pid == 0
    assert slot.restart_at is not None and slot.restart_at > time.monotonic()
    assert slot.quick_deaths == 1
    # its socket pair closed (counting /proc/self/fd instead raced other tests' threads)
    assert [end.fileno() for pair in pairs for end in pair] == [-1, -1]
    assert "worker 1: cannot start a process (Resource temporarily unavailable): trying " \
        "again in 1.0 s" in caplog.text
