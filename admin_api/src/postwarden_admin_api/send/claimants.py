"""Which process claimed a relay's outbox rows, and whether it is gone.

A claim's lease must outlast any submit under way (:mod:`.lease`), so the rows of a
service killed mid-batch (SIGKILL, the OOM killer) would wait up to the whole lease
for another claim. A claim names its process (:attr:`Claimants.me`); a process on the
same host, in the same PID namespace and of the same user, can tell from ``/proc``
that the one named is gone, and then sends nothing more: its rows may be claimed at
once, and come back as interrupted attempts (Postfix's log decides whether one was
queued), as when their lease ends. Only a process provably gone counts: one elsewhere,
another user's (``hidepid`` hides it) or one ``/proc`` cannot tell of keeps its lease.
Elsewhere its claim token (:mod:`.claimtoken`) tells; ``/proc`` still tells of a
process gone mid-submit, whose row the token keeps until its mark ends (.mark).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

PROC = Path("/proc")
# Processes exited: a zombie waits for its parent to reap it, but runs nothing more.
EXITED_STATES = frozenset({"Z", "X", "x"})
# Claims named so hold a claim token (.claimtoken); older versions' claims do not.
LOCK_MARK = "lock:"


def _process(pid: int | str) -> tuple[str, str] | None:
    """The state and start time (clock ticks since boot: a reused pid has another)
    of process ``pid``, None when there is none; OSError when /proc cannot tell."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command's name, which may hold ")"
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime) of proc(5)


def _this_host() -> str | None:
    """This boot of this host, PID namespace and user: where a process named by pid
    can be looked up; None when /proc cannot tell (not Linux)."""
    try:
        boot = (PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = (PROC / "self/ns/pid").stat().st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}/{os.getuid()}/"


class Claimants:
    """This relay's claim token, named after its process, and which names in claims are
    of processes gone."""

    def __init__(self) -> None:
        self.here = _this_host()  # the names' prefix of this host's processes
        # A claim token of this relay's own (another in this process has another), after
        # the process's name ("-" where /proc cannot tell it).
        self.me = f"{LOCK_MARK}{self._process_name() or '-'}/{uuid.uuid4().hex}"

    def _process_name(self) -> str | None:
        if self.here is None:
            return None
        try:
            started = _process(os.getpid())
        except OSError:
            return None
        return None if started is None else f"{self.here}{os.getpid()}/{started[1]}"

    def gone(self, names: list[str]) -> list[str]:
        """Those of ``names`` that name a process of this host provably gone."""
        return [name for name in names if name != self.me and self._gone(name)]

    def tokens(self, names: list[str]) -> list[str]:
        """Those of ``names`` that are other processes' claim tokens."""
        return [name for name in names if name != self.me and name.startswith(LOCK_MARK)]

    def _gone(self, name: str) -> bool:
        process_name = name.removeprefix(LOCK_MARK)
        if self.here is None or not process_name.startswith(self.here):
            return False
        pid, _, rest = process_name.removeprefix(self.here).partition("/")
        started = rest.partition("/")[0]  # the token's own part after it, if any
        if not pid.isdigit():
            return False
        try:
            process = _process(pid)
        except (OSError, IndexError):  # cannot tell: alive, for all we know
            return False
        return process is None or process[1] != started or process[0] in EXITED_STATES
