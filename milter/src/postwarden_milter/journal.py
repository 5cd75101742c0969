"""The audit journal: each event on disk before its message's reply leaves, until it is
settled.

An event waits in the pipeline's queue until the writer takes it (every
FLUSH_SECONDS, or later while Postgres is slow). A milter that died without a stop
(``kill -9``, the OOM killer) took the events it held with it, although Postfix had
its answer. So each event is first appended here, by the callback's thread, in one
``write`` without fsync: it survives the process, not the machine (the spool's fsync
per batch is for outages, and a power cut also takes what Postfix acknowledged last).

The writer settles events once it stored them, spooled them, or counted them dropped.
A segment (a file) takes appends until the writer takes a batch, then the next one
does; a segment whose events are all settled is deleted, so the journal holds about
one batch of events. Segments left by a process that died are appended to its spool
when the next one starts (:func:`adopt_journal`), and the spool's replay stores each
event once (event ids), those already stored included.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from postwarden_policies import AuditEvent

from .spool import SPOOL_NAME, append_durably, fsync_directory

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"audit-journal-(\d+)-(\d+)\.jsonl")


def _segment_path(directory: Path, worker: int, segment: int) -> Path:
    return directory / f"audit-journal-{worker}-{segment}.jsonl"


def journal_segments(directory: Path) -> dict[int, list[Path]]:
    """Segments on disk by worker index, each worker's in the order they were written."""
    found: dict[int, list[tuple[int, Path]]] = {}
    for path in directory.glob("audit-journal-*.jsonl"):
        if match := _SEGMENT.fullmatch(path.name):
            found.setdefault(int(match[1]), []).append((int(match[2]), path))
    return {worker: [path for _, path in sorted(paths)] for worker, paths in found.items()}


def adopt_journal(directory: Path, worker: int, append: Callable[[bytes], object]) -> int:
    """Hand worker ``worker``'s leftover segments to ``append`` (a spool's) and delete
    them; how many events. Only while that worker does not run. A last line without
    its newline was torn by the death mid-append: its callback never returned, so
    Postfix has no answer for its message either."""
    events = 0
    segments = journal_segments(directory).get(worker, [])
    for path in segments:
        data = path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]
        if data:
            append(data)
            events += data.count(b"\n")
        path.unlink()
    if segments:  # else after a power cut they could be back, to be appended again
        fsync_directory(directory)
    if events:
        log.warning("audit journal: %d events of a milter process that ended without a "
                    "stop (worker %d) appended to the audit spool, to be stored once",
                    events, worker)
    return events


def adopt_orphan_journals(directory: Path, workers: int) -> None:
    """The segments of workers that no longer exist (``processes`` was lowered) go to
    the first worker's spool, as their spools do (spool.adopt_orphans); only while no
    worker runs."""
    first = functools.partial(append_durably, directory / SPOOL_NAME)
    for worker in journal_segments(directory):
        if worker >= workers:
            adopt_journal(directory, worker, first)


class AuditJournal:
    """One process's journal (thread-safe: callbacks append, the writer settles)."""

    def __init__(self, directory: Path, worker: int = 0) -> None:
        self._directory = directory
        self._worker = worker
        self._lock = threading.Lock()
        self._segment = 0  # the one appends go to
        self._fd: int | None = None  # its file, opened by the first append
        self._pending: dict[int, int] = {}  # segment -> events not yet settled
        self._segment_of: dict[str, int] = {}  # event id -> its segment

    def append(self, event: AuditEvent) -> None:
        """Write ``event`` to the current segment. An error (a full filesystem) is not
        the message's: it raises OSError, and the event goes on unjournaled."""
        line = (event.to_json() + "\n").encode("utf-8")  # outside the lock: the costly part
        with self._lock:
            if self._fd is None:
                self._fd = os.open(_segment_path(self._directory, self._worker, self._segment),
                                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            written = os.write(self._fd, line)
            if written != len(line):  # a full filesystem: the next line starts on its own
                os.write(self._fd, b"\n")
                raise OSError(errno.ENOSPC, "short write")
            self._pending[self._segment] = self._pending.get(self._segment, 0) + 1
            self._segment_of[event.event_id] = self._segment

    def rotate(self) -> None:
        """Later appends go to a new segment (the writer is taking a batch): the current
        one can be deleted once the events in it are settled."""
        with self._lock:
            if self._fd is None:
                return
            os.close(self._fd)
            self._fd = None
            self._segment += 1
            self._delete_settled(self._segment - 1)

    def settled(self, events: Iterable[AuditEvent]) -> None:
        """``events`` are stored, spooled or counted dropped: their segments can go."""
        with self._lock:
            done = set()
            for event in events:
                segment = self._segment_of.pop(event.event_id, None)
                if segment is not None:
                    self._pending[segment] -= 1
                    done.add(segment)
            for segment in done:
                self._delete_settled(segment)

    def _delete_settled(self, segment: int) -> None:
        if segment == self._segment or self._pending.get(segment, 0) > 0:
            return
        self._pending.pop(segment, None)
        with contextlib.suppress(FileNotFoundError):
            _segment_path(self._directory, self._worker, segment).unlink()

    def adopt(self, append: Callable[[bytes], object]) -> int:
        """At the start, before any append: what this worker's predecessor left."""
        return adopt_journal(self._directory, self._worker, append)

    def close(self) -> None:
        """At the stop, once the writer drained the queue: nothing is left to settle."""
        self.rotate()
