"""The audit journal: each event on disk before its message's reply leaves, until it is
settled.

An event waits in the pipeline's queue until the writer takes it (every
FLUSH_SECONDS, or later while Postgres is slow). A milter that died without a stop
(``kill -9``, the OOM killer) took the events it held with it, although Postfix had
its answer. So each event is first appended here, by the callback's thread, in one
``write`` without fsync: it survives the process, not the machine (the spool's fsync
per batch is for outages, and a power cut also takes what Postfix acknowledged last).

The writer settles events once it stored them, spooled them, or counted them dropped
(one counted dropped, whatever the reason, is marked so in its segment, left out at the
next start: its line overwritten in place, which a full filesystem takes too);
those the spool could not take (a full filesystem) stay unsettled, delivered again once
it takes writes (or at the next start).
A segment (a file) takes appends until the writer takes a batch, then the next one
does; a segment whose events are all settled is deleted, so the journal holds what
the queue holds, about one batch in normal times. Segments left by a process that
died are appended to its spool when the next one starts (:func:`adopt_journal`), and
the spool's replay stores each event once (event ids), those already stored included.
Without a database the spool is the audit log, and the events it has already are left
out (a segment spans several batches while the writer is behind). A journal that
cannot be written, deleted or adopted (a full or read-only filesystem) stops nothing:
what it could not take is unjournaled (or, where the spool would have to take it,
refused: AuditPipeline.submit), what it could not delete is adopted at a later start,
what it could not adopt once the spool takes writes again (the writer probes it).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from postwarden_policies import AuditEvent

from .spool import (
    DROPPED,
    SPOOL_NAME,
    append_durably,
    fsync_directory,
    mark_dropped,
    tail_event_ids,
)

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"audit-journal-(\d+)-(\d+)\.jsonl")
# How far back the audit log (no database) is read for events a journal holds too: a
# full default queue is some 7 MB of events. A segment kept at a stop because it could
# not be deleted, and adopted only once more than this was logged since (or the log
# rotated), may repeat events there.
LOG_TAIL_BYTES = 32 * 1024 * 1024


def _segment_path(directory: Path, worker: int, segment: int) -> Path:
    return directory / f"audit-journal-{worker}-{segment}.jsonl"


def _segment_number(path: Path) -> int:
    match = _SEGMENT.fullmatch(path.name)
    assert match is not None  # noqa: S101 - journal_segments() lists only those
    return int(match[2])


def journal_segments(directory: Path) -> dict[int, list[Path]]:
    """Segments on disk by worker index, each worker's in the order they were written."""
    found: dict[int, list[Path]] = {}
    for path in directory.glob("audit-journal-*.jsonl"):
        if match := _SEGMENT.fullmatch(path.name):
            found.setdefault(int(match[1]), []).append(path)
    return {worker: sorted(paths, key=_segment_number) for worker, paths in found.items()}


def adopt_journal(directory: Path, worker: int, append: Callable[[bytes], object],
                  known: Collection[str] = (), *, below: int | None = None,
                  quiet: bool = False, damaged: Callable[[int], object] = lambda _: None,
                  ) -> int:
    """Hand worker ``worker``'s leftover segments (those numbered ``below``, when given)
    to ``append`` (a spool's) and delete them, leaving out the events whose ids are
    ``known``; how many events were handed. Only while that worker does not run, or
    with ``below`` its first own segment. A last line without its newline was torn by
    the death mid-append: its callback never returned, so Postfix has no answer for
    its message either. A line that is no event (a segment is never fsync'd: a power
    cut leaves NULs where its data was) is left out, logged and given to ``damaged``:
    without a database the spool is the audit log, read as JSON lines. A spool that
    takes nothing now (a full filesystem) leaves the segments for a later try: logged
    (unless ``quiet``), no mail refused."""
    events = lost = 0
    segments = [path for path in journal_segments(directory).get(worker, [])
                if below is None or _segment_number(path) < below]
    try:
        for path in segments:
            kept, unreadable = _adoptable(path.read_bytes(), known)
            if kept:
                append(b"".join(kept))
                events += len(kept)
            path.unlink()
            lost += unreadable
        if segments:  # else after a power cut they could be back, to be appended again
            fsync_directory(directory)
    except OSError as exc:
        # Its own worker's writer tries again once the spool takes writes; else a start.
        if not quiet:
            log.error("audit journal of worker %d not spooled (%s): kept for later",
                      worker, exc.strerror)
    if events:
        log.warning("audit journal: %d events of a milter process that ended without a "
                    "stop (worker %d) appended to the audit spool", events, worker)
    if lost:
        damaged(lost)
        log.error("audit journal: %d damaged lines of worker %d left out, their events "
                  "lost (a power cut, or the disk)", lost, worker)
    return events


def _adoptable(data: bytes, known: Collection[str]) -> tuple[list[bytes], int]:
    """The lines of a segment's ``data`` to spool (those with a newline, not of an event
    ``known`` or marked dropped), and how many of them are no event. Split at newlines
    alone: a carriage return in damaged bytes is no line's end."""
    lines = [line + b"\n" for line in data.split(b"\n")[:-1]]
    left_out = set(known) | _dropped_ids(lines)
    events = [(line, _event_id(line)) for line in lines if not line.startswith(DROPPED)]
    kept = [line for line, event_id in events
            if event_id is not None and event_id not in left_out]
    return kept, sum(event_id is None for _, event_id in events)


def _dropped_ids(lines: list[bytes]) -> set[str]:
    """The ids of the events these lines say were counted dropped (AuditJournal.dropped)."""
    found = set()
    for line in lines:
        if line.startswith(DROPPED):
            with contextlib.suppress(ValueError, TypeError):  # damaged: its event is kept
                found.add(str(json.loads(line)["dropped"]))
    return found


def _event_id(line: bytes) -> str | None:
    """The event id of a journal line; None for a line that is no event."""
    try:
        found = json.loads(line).get("event_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def adopt_orphan_journals(directory: Path, workers: int, audit_log: bool) -> None:
    """The segments of workers that no longer exist (``processes`` was lowered) go to
    the first worker's spool, as their spools do (spool.adopt_orphans, which runs
    first); only while no worker runs. Where the spool is the audit log (no database),
    the events it holds already are left out."""
    target = directory / SPOOL_NAME
    first = functools.partial(append_durably, target)
    for worker in journal_segments(directory):
        if worker >= workers:
            known = tail_event_ids(target, LOG_TAIL_BYTES) if audit_log else ()
            adopt_journal(directory, worker, first, known)


def _write_whole(fd: int, line: bytes, size: int) -> None:
    """Append ``line`` to the file of ``fd``, ``size`` bytes long, in one write. A short
    one (a full filesystem) is cut back, leaving no piece for the next line to join."""
    if os.write(fd, line) != len(line):
        os.ftruncate(fd, size)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class AuditJournal:
    """One process's journal (thread-safe: callbacks append, the writer settles)."""

    def __init__(self, directory: Path, worker: int = 0) -> None:
        self._directory = directory
        self._worker = worker
        self._lock = threading.Lock()
        # The one appends go to: past those left over, which an adoption may have kept.
        left = journal_segments(directory).get(worker, [])
        self._segment = _segment_number(left[-1]) + 1 if left else 0
        self._first = self._segment  # those before are the predecessor's, for adopt()
        self.leftover = bool(left)  # some of them not adopted yet
        self._tried = False  # adopt() was called
        self._fd: int | None = None  # its file, opened by the first append
        self._size = 0  # its size: a short write is cut back to it
        self._undeletable = False  # a segment could not be deleted (said once)
        self._pending: dict[int, int] = {}  # segment -> events not yet settled
        # event id -> its segment, and its line's offset and length there
        self._segment_of: dict[str, tuple[int, int, int]] = {}

    def append(self, event: AuditEvent) -> None:
        """Write ``event`` to the current segment. An error (a full filesystem) is not
        the message's: it raises OSError, and the event goes on unjournaled."""
        line = (event.to_json() + "\n").encode("utf-8")  # outside the lock: the costly part
        with self._lock:
            if self._fd is None:
                self._fd = os.open(_segment_path(self._directory, self._worker, self._segment),
                                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            _write_whole(self._fd, line, self._size)
            self._segment_of[event.event_id] = (self._segment, self._size, len(line))
            self._size += len(line)
            self._pending[self._segment] = self._pending.get(self._segment, 0) + 1

    def rotate(self) -> None:
        """Later appends go to a new segment (the writer is taking a batch): the current
        one can be deleted once the events in it are settled. OSError when its close
        fails (NFS says a write it deferred failed there): rotated all the same, as
        the descriptor is gone (Linux frees it whatever close says; closed again, it
        could be another file's by then)."""
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd, self._size = self._fd, None, 0
            try:
                os.close(fd)
            finally:
                self._segment += 1
                self._delete_settled(self._segment - 1)

    def settled(self, events: Iterable[AuditEvent]) -> None:
        """``events`` are stored, spooled or counted dropped: their segments can go."""
        with self._lock:
            done = set()
            for event in events:
                if (where := self._segment_of.pop(event.event_id, None)) is not None:
                    segment = where[0]
                    self._pending[segment] -= 1
                    done.add(segment)
            for segment in done:
                self._delete_settled(segment)

    def dropped(self, events: Iterable[AuditEvent]) -> None:
        """``events`` are counted dropped: settled, and said so in their segments, which a
        next start would else spool (an end without a stop before a segment went, one
        that spans several batches say). Each line is overwritten in place, which takes
        no room: a full filesystem takes it too. One that cannot be (an I/O error) is
        logged: its event may come back."""
        events = list(events)
        with self._lock:
            for event in events:
                if (where := self._segment_of.get(event.event_id)) is not None:
                    self._mark_dropped(event.event_id, *where)
        self.settled(events)

    def _mark_dropped(self, event_id: str, segment: int, start: int, length: int) -> None:
        try:
            # Not the appends' descriptor: with O_APPEND, Linux appends whatever the offset.
            fd = os.open(_segment_path(self._directory, self._worker, segment), os.O_RDWR)
            try:
                mark_dropped(fd, start, length, event_id)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("audit journal: cannot mark event %s dropped (%s): a start after "
                      "an end without a stop may store it", event_id, exc.strerror)

    @property
    def unsettled(self) -> int:
        """Events appended and not settled: what a next start would spool."""
        with self._lock:
            return len(self._segment_of)

    def held(self, events: Iterable[AuditEvent]) -> list[AuditEvent]:
        """Those of ``events`` in the journal, not settled."""
        with self._lock:
            return [event for event in events if event.event_id in self._segment_of]

    def _delete_settled(self, segment: int) -> None:
        if segment == self._segment or self._pending.get(segment, 0) > 0:
            return
        self._pending.pop(segment, None)
        path = _segment_path(self._directory, self._worker, segment)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a read-only spool_dir: the writer goes on
            if not self._undeletable:
                self._undeletable = True
                log.error("audit journal: cannot delete %s (%s): the next start spools its "
                          "events again (said once)", path.name, exc.strerror)

    def adopt(self, append: Callable[[bytes], object], known: Collection[str] = (),
              damaged: Callable[[int], object] = lambda _: None) -> int:
        """What this worker's predecessor left: at the start, and again (by the writer)
        while a full filesystem kept some of it (``leftover``)."""
        # Said once: the writer tries again every second while there is room for a probe.
        events = adopt_journal(self._directory, self._worker, append, known, below=self._first,
                               quiet=self._tried, damaged=damaged)
        self._tried = True
        self.leftover = any(_segment_number(path) < self._first
                            for path in journal_segments(self._directory).get(self._worker, []))
        return events
