"""Where a benchmark's CPU went: the CPU time of process trees, read from /proc.

On a machine whose cores are all busy, a rate is set by the CPU each message
costs across every process that handles it; these figures say which part
costs what, and :func:`cores_busy` whether the cores were all busy. A
group is a set of root processes with their descendants: its time is user
plus system time of the members alive at a reading, plus what
they reaped (a process's reaped children are in its cutime and cstime, so
Postfix's short-lived smtpd and cleanup processes count under master).
A process counted *alone* is its own time only, every thread's, without any
descendant's: a benchmark's own process, the load generator, whose children
are the servers it measures.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


def interpreter() -> str:
    """The Python the servers under test run on (this one): builds differ by a fifth in
    speed on our code, so a figure names it."""
    return f"python: {platform.python_version()} ({os.path.realpath(sys.executable)})"


def _stat_fields(text: bytes) -> list[bytes]:
    """/proc/PID/stat after the command's closing parenthesis, from proc(5)'s field 3
    (state): [1] ppid, [11:15] utime, stime, cutime, cstime."""
    return text[text.rindex(b")") + 2:].split()


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks of the process and of the children it reaped)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:  # ended meanwhile
            continue
        fields = _stat_fields(text)
        found[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return found


def _members(roots: Iterable[int | None], processes: Mapping[int, tuple[int, int]]
             ) -> set[int]:
    """The roots alive in ``processes`` and all their descendants."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    members: set[int] = set()
    todo = [pid for pid in roots if pid in processes]
    while todo:
        pid = todo.pop()
        if pid not in members:
            members.add(pid)
            todo.extend(children.get(pid, ()))
    return members


def tree(root: int) -> set[int]:
    """The process and its descendants alive now."""
    return _members([root], _processes())


def tree_seconds(groups: Mapping[str, Iterable[int | None]]) -> dict[str, float]:
    """CPU seconds used so far by each group (None roots are ignored)."""
    processes = _processes()
    return {name: sum(processes[pid][1] for pid in _members(roots, processes)) / TICKS
            for name, roots in groups.items()}


def own_seconds(pid: int) -> float:
    """CPU seconds the process itself has used so far, its threads' but not its children's."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = _stat_fields(stat.read())
    return sum(int(f) for f in fields[11:13]) / TICKS


def machine_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(field) for field in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal; guest time is already in user.
    return sum(fields[:8]), fields[3] + fields[4]


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How busy the machine's cores were between two machine_ticks() readings."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return (total - idle) / total if total else 0.0


@dataclass
class Busy:
    fraction: float = 0.0


@contextmanager
def cores_busy() -> Iterator[Busy]:
    """A Busy whose fraction is, once the block ends, how busy the cores were within it."""
    busy = Busy()
    before = machine_ticks()
    yield busy
    busy.fraction = busy_fraction(before, machine_ticks())


def _seconds(groups: Mapping[str, Iterable[int | None]], alone: Mapping[str, int]
             ) -> dict[str, float]:
    return tree_seconds(groups) | {name: own_seconds(pid) for name, pid in alone.items()}


@contextmanager
def measured(groups: Mapping[str, Iterable[int | None]], alone: Mapping[str, int] | None = None
             ) -> Iterator[dict[str, float]]:
    """A dict that holds, once the block ends, each group's CPU seconds within it, and
    each process's of ``alone`` (name -> pid), counted without its descendants."""
    used: dict[str, float] = {}
    before = _seconds(groups, alone or {})
    yield used
    after = _seconds(groups, alone or {})
    used.update({name: after[name] - before[name] for name in after})


def per_message_ms(used: Mapping[str, float], messages: int) -> dict[str, float]:
    return {name: 1000 * seconds / messages for name, seconds in used.items()}


def header_cells(names: Sequence[str]) -> str:
    return "".join(f" {name:>9}" for name in (*names, "total"))


def median_cells(runs: Sequence[Mapping[str, float]], names: Sequence[str]) -> str:
    """Each group's median over the runs, then the median of the runs' totals."""
    cells = [statistics.median(run[name] for run in runs) for name in names]
    cells.append(statistics.median(sum(run.values()) for run in runs))
    return "".join(f" {cell:9.2f}" for cell in cells)
