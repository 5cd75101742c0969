"""The local audit spool: append-only JSON lines, fsync'd per batch.

Only the audit writer thread touches it. When Postgres is away, batches are
appended here; once it is back they are read in order and written again.
Each event's unique id makes that replay idempotent, so a crash between
"written to Postgres" and "spool truncated" duplicates nothing. A line torn
by a crash mid-append is cut when the spool is opened, and a failed append
is cut off again: either would swallow the next batch into one bad line.
An event a replay drops (refused, or not written in time) has its line
overwritten by a mark saying so: a replay after a kill, which may begin at the
start again, would else store it, or refuse it again.

How far a replay got is kept beside the spool (``audit-spool.jsonl.replayed``:
the offset and a SHA-256 of the bytes before it), rewritten after each batch
Postgres committed, so that a start after a kill or a stop mid-replay goes on
from there. Only where the spool still begins with those very bytes: any other
file (moved away, emptied, rotated), or a position torn or lost, and the replay
begins at the start again, as ids make it safe to. Never fsync'd: a position
lost to a power cut is an older one, or none.

With no database configured the spool *is* the audit log (JSON lines an
admin can ship or rotate), and nothing is ever replayed from it. Its size is
therefore read from the file at each append, never counted along: after a
rotation it is the new file's (with a database, less what a replay wrote).

An fsync makes a file's data durable, not its name: after creating a file
(and after unlinking one) the directory is fsync'd too, or a power cut could
take the new file away with every batch reported spooled in it. Only then:
appends to an existing file cost no more than their own fsync.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from postwarden_policies import AuditEvent

log = logging.getLogger(__name__)

SPOOL_NAME = "audit-spool.jsonl"
TAIL_CHUNK = 64 * 1024  # read backwards in these to find the last newline
COPY_CHUNK = 1024 * 1024  # an orphan spool is appended to the first worker's in these
PROBE_BYTES = 64 * 1024  # room for about a hundred events (AuditSpool.takes_writes)
_WORKER_SPOOL = re.compile(r"audit-spool-(\d+)\.jsonl")
# An orphan spool being appended to the first worker's, from this offset of it.
_ADOPTING = re.compile(r"audit-spool-(\d+)\.adopted-at-(\d+)\.jsonl")
_EVENT_ID = re.compile(rb'"event_id":"([0-9a-f]+)"')  # as AuditEvent.to_json writes it
# A line saying that the event once on it was counted dropped (mark_dropped): skipped.
DROPPED = b'{"dropped":'
POSITION_SUFFIX = ".replayed"  # beside a spool: how far its replay got (module docstring)


def spool_name(worker: int) -> str:
    """Each worker process has its own spool; the first keeps the single process's name."""
    return SPOOL_NAME if worker == 0 else f"audit-spool-{worker}.jsonl"


def adopt_orphans(directory: Path, workers: int) -> None:
    """Append the spools of workers that no longer exist (``processes`` was lowered) to
    the first worker's, so their events are replayed; only while no worker runs. One
    that cannot be appended now (a full filesystem) stays for a later start: as a
    journal, it stops no start. One whose adoption a kill interrupted is finished first,
    each of its events appended once (without a database the spool is the audit log)."""
    target = directory / SPOOL_NAME
    _cut_torn_line(target)  # before anything is appended to it
    for path in sorted(directory.glob("audit-spool-*.jsonl")):
        adopting = _ADOPTING.fullmatch(path.name)
        match = _WORKER_SPOOL.fullmatch(path.name)
        if adopting is None and (match is None or int(match[1]) < workers):
            continue
        try:
            _adopt_orphan(path, target, int(adopting[2]) if adopting else None)
        except OSError as exc:
            log.error("audit spool %s not appended to %s (%s): kept for the next start",
                      path.name, SPOOL_NAME, exc.strerror)
            continue
        # Its events are all replayed from the target: how far its own replay got is void.
        with contextlib.suppress(OSError):
            path.with_name(f"{path.name.split('.')[0]}.jsonl{POSITION_SUFFIX}").unlink(
                missing_ok=True)


def _adopt_orphan(path: Path, target: Path, offset: int | None) -> None:
    """Append ``path`` to ``target``. Renamed first to a name that says where in the
    target its copy begins (``offset``, None before), so that a start that finds it so
    appends only what a killed one did not."""
    if offset is None:
        _cut_torn_line(path)
        offset = _size(target)
        marked = path.with_name(f"{path.stem}.adopted-at-{offset}.jsonl")
        path.rename(marked)
        fsync_directory(path.parent)  # else after a power cut the copy would begin again
        path = marked
    size = path.stat().st_size
    append_durably(target, _chunks(path, _copied(path, target, offset)))
    path.unlink()
    # Else after a power cut the orphan could be back, to be appended a second time.
    fsync_directory(path.parent)
    log.warning("audit spool: %d bytes from %s appended to %s", size, path.name, SPOOL_NAME)


def _copied(path: Path, target: Path, offset: int) -> int:
    """How much of ``path`` a killed adoption appended to ``target`` at ``offset`` (its
    torn last line cut since): the target's bytes from there, if they are the file's
    first; else none (another file, or the first worker's own events after a failed
    append)."""
    length = min(max(0, _size(target) - offset), path.stat().st_size)
    if length == 0:
        return 0
    with path.open("rb") as source, target.open("rb") as copy:
        copy.seek(offset)
        done = 0
        while done < length:
            chunk = source.read(min(COPY_CHUNK, length - done))
            if not chunk or copy.read(len(chunk)) != chunk:
                return 0
            done += len(chunk)
    return length


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _prefix_digest(path: Path, length: int) -> hashlib._Hash | None:
    """A SHA-256 of the first ``length`` bytes of ``path``; None when it is shorter."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while length > 0 and (chunk := handle.read(min(COPY_CHUNK, length))):
            digest.update(chunk)
            length -= len(chunk)
    return digest if length == 0 else None


def _chunks(path: Path, start: int = 0) -> Iterator[bytes]:
    """The file at ``path`` from byte ``start`` in pieces of COPY_CHUNK: an orphan spool
    may hold up to ``spool_max_bytes`` (1 GiB by default), and without a database, where
    it is the audit log, any size; read whole, it took as much memory at the start."""
    with path.open("rb") as handle:
        handle.seek(start)
        while chunk := handle.read(COPY_CHUNK):
            yield chunk


def tail_event_ids(path: Path, max_bytes: int) -> set[str]:
    """The ids of the events in the last ``max_bytes`` of the spool at ``path``."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - max_bytes))
            return {found.decode() for found in _EVENT_ID.findall(handle.read(max_bytes))}
    except FileNotFoundError:
        return set()


def lock_directory(directory: Path, shared: bool = False) -> int:
    """Hold an flock on ``directory`` until this process (and those it forks) exit, or
    its descriptor, returned, is closed. BlockingIOError while another holds it (one
    ``shared`` lets others share it, a start's claim does not); OSError on a filesystem
    without locks."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


class HeldLock:
    """One shared lock on a directory made again: the lock on one removed since is let
    go, else each removal left a descriptor open for the process's life."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def take(self, directory: Path) -> None:
        """Lock ``directory`` (as :func:`lock_directory`, shared), then let go the lock
        held before."""
        fd = lock_directory(directory, shared=True)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd


class SpoolDirLock:
    """The supervisor's hold on spool_dir once a worker's writer made it again (removed
    while the milter ran: .audit_pipeline). The writer's lock ends with its process:
    after it, no worker held the new directory, and another milter could start with
    it. So the supervisor locks it too, as a start's claim does: the workers it forks
    later inherit the lock, which ends with the milter. Shared with the writer's (both
    ``shared``); a start's claim, exclusive, is refused while either holds it."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._held = _identity(directory)  # the directory the start claimed
        self._lock = HeldLock()  # on one made again

    def follow(self) -> None:
        """Lock spool_dir if it is not the directory held (made again); tried once each."""
        found = _identity(self._directory)
        if found is None or found == self._held:
            return  # the same, or gone (a worker's writer makes it again)
        self._held = found
        try:
            self._lock.take(self._directory)
        except OSError as exc:  # held exclusively: another milter started with it
            log.error("spool_dir %s, made again, cannot be locked (%s): another milter may "
                      "run with it", self._directory, exc.strerror)


def _identity(directory: Path) -> tuple[int, int] | None:
    """(device, inode) of ``directory``; None if it cannot be looked at (gone)."""
    try:
        found = os.stat(directory)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def fsync_directory(directory: Path) -> None:
    """Make the names created or removed in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_dropped(fd: int, start: int, length: int, event_id: str | None,
                 holds: bytes | None = None) -> None:
    """Overwrite the line at ``start`` (``length`` bytes, its newline included) of event
    ``event_id`` (None: a damaged line, ``holds`` its bytes) with one as long saying it
    was dropped, padded with spaces: in place, it takes no room, so a full filesystem
    takes it too (an event's line, with its other fields, is always the longer). Nothing
    where that line is not the event's or the damaged one any more (the file emptied or
    replaced by hand meanwhile), nor where a damaged line is too short for it."""
    holds = holds or f'"event_id":"{event_id}"'.encode()
    marker = DROPPED + json.dumps(event_id).encode() + b"}"
    line = os.pread(fd, length, start)
    if len(marker) >= length or not line.endswith(b"\n") or holds not in line:
        return
    if os.pwrite(fd, marker.ljust(length - 1) + b"\n", start) != length:
        raise OSError(errno.EIO, "short write")


def _cut_torn_line(path: Path) -> None:
    """Cut a last line without its newline: a crash tore it mid-append, so its batch
    never counted as spooled, and the next append would be glued onto it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        size = keep = os.fstat(fd).st_size
        while keep > 0:
            start = max(0, keep - TAIL_CHUNK)
            newline = os.pread(fd, keep - start, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        if keep < size:
            os.ftruncate(fd, keep)
            os.fsync(fd)
            log.error("audit spool: cut a torn last line (%d bytes) from %s", size - keep,
                      path.name)
    finally:
        os.close(fd)


def append_durably(path: Path, data: bytes | Iterable[bytes]) -> int:
    """One append (of ``data``, or of its pieces in turn), then fsync (and the
    directory's, when the file is new): a batch is spooled only once this returns (the
    file's new size). A failed append is cut off again, so that no part of it is left; a
    file it created is removed again, so that the next append creates it anew, fsyncing
    the directory."""
    pieces = (data,) if isinstance(data, bytes) else data
    flags = os.O_WRONLY | os.O_APPEND
    created = False
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        fd, created = os.open(path, flags | os.O_CREAT, 0o600), True
    try:
        size = appended = os.fstat(fd).st_size
        try:
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                appended += len(piece)
            os.fsync(fd)
            if created:
                fsync_directory(path.parent)
        except OSError:
            with contextlib.suppress(OSError):  # the append's own error is the one to report
                if created:
                    path.unlink()
                else:
                    os.ftruncate(fd, size)
            raise
        return appended
    finally:
        os.close(fd)


class SpoolUnreadable(Exception):
    """The spool's file could not be read (its reason)."""


class SpoolBudget:
    """``spool_max_bytes`` for all the milter's spools together.

    Each worker records its spool's size in its own slot of an array in
    shared memory made before the fork (MAP_SHARED), so every worker sees the
    sum without a lock (one writer per slot; a slot is an aligned 8-byte
    store). Split into fixed shares instead, a worker whose spool outgrew its
    share (``processes`` raised after an outage) refused mail while the
    others' shares stood empty. A dead worker's slot keeps its size: its
    spool file stays, and its successor reads the same size back.

    Shared the same way: whether the last append to a spool failed (its
    filesystem full or read-only). The spools share ``spool_dir``, so what one
    cannot take the others cannot either: known to one worker only, each other
    worker went on accepting mail until a batch of its own was lost.
    """

    def __init__(self, max_bytes: int, slots: int = 1) -> None:
        self.max_bytes = max_bytes
        self._sizes = memoryview(mmap.mmap(-1, 8 * slots)).cast("q")
        self._unwritable = memoryview(mmap.mmap(-1, 8)).cast("q")

    def record(self, slot: int, size: int) -> None:
        self._sizes[slot] = size

    @property
    def used(self) -> int:
        return sum(self._sizes)

    @property
    def reached(self) -> bool:
        return self.used >= self.max_bytes

    @property
    def unwritable(self) -> bool:
        """The last append to any worker's spool failed."""
        return bool(self._unwritable[0])

    @unwritable.setter
    def unwritable(self, failed: bool) -> None:
        self._unwritable[0] = failed


class AuditSpool:
    def __init__(self, directory: Path, budget: SpoolBudget, worker: int = 0) -> None:
        self.path = directory / spool_name(worker)
        self.budget = budget
        self._worker = worker
        self._position = self.path.with_name(self.path.name + POSITION_SUFFIX)
        self._replayed = 0  # bytes at the start already in Postgres (replayed_to)
        self._digest = hashlib.sha256()  # of those bytes
        self._position_failed = False  # the last position could not be written: said
        self._read_to = 0  # how far batches() got: a damaged line is counted once
        # Where the events of the batch being replayed are (event id -> offset, length).
        self._lines: dict[str, tuple[int, int]] = {}
        self._marking: int | None = None  # the file, for marks not yet fsync'd
        self._uncleared = False  # the last clear() failed: the part replayed stays in it
        _cut_torn_line(self.path)
        self._resume()
        budget.record(worker, self.unreplayed)

    @property
    def size(self) -> int:
        """The file's size now (0 while rotated away); SpoolUnreadable when it cannot be
        read (EACCES, EIO)."""
        try:
            return _size(self.path)
        except OSError as exc:
            raise SpoolUnreadable(exc.strerror or str(exc)) from exc

    @property
    def full(self) -> bool:
        """The spools of all workers together reached ``spool_max_bytes``."""
        return self.budget.reached

    @property
    def replayed(self) -> int:
        """Bytes at the start already in Postgres: where a replay goes on. 0 for another
        file since (moved away, emptied): going on past the end of the new one, a replay
        would find nothing there and empty it, the events spooled in it lost."""
        return self._replayed

    @property
    def unreplayed(self) -> int:
        """Bytes not yet in Postgres: all of the file after a start (its replay begins
        again at the beginning), less what a replay wrote since."""
        return max(0, self.size - self._replayed)

    def __bool__(self) -> bool:
        """Something to replay: the file is not empty, or once it could not be emptied
        (:meth:`clear`), holds more than was replayed."""
        return self.size > (self._replayed if self._uncleared else 0)

    def append(self, events: Sequence[AuditEvent]) -> None:
        """Append a batch durably (one write, one fsync)."""
        if not events:
            return
        self.append_lines("".join(event.to_json() + "\n" for event in events).encode())

    def append_lines(self, data: bytes) -> None:
        """Append events as JSON lines already (a journal's: .journal), durably."""
        size = append_durably(self.path, data)
        self._record(size, size - len(data))

    def takes_writes(self) -> bool:
        """Whether the spool's filesystem takes a write now, after an append failed (it
        was full, or read-only): a file of PROBE_BYTES beside the spool written, fsync'd
        and removed; no probe in the spool itself, which may be an audit log being read."""
        probe = self.path.with_name(f"audit-probe-{self._worker}.tmp")
        try:
            probe.unlink(missing_ok=True)  # one left by a kill (or by another user)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                written = os.write(fd, bytes(PROBE_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink()
        except OSError:
            return False
        return written == PROBE_BYTES

    def refresh(self) -> None:
        """Record the file's size now: a full backlog moved away or emptied by hand (to
        let mail in while Postgres is away) counted at its last append's size, and kept
        mail refused until a restart."""
        size = self.size
        self._record(size, size)

    def _record(self, size: int, before: int) -> None:
        """Record ``size``, the file's; ``before``, its size before this writer's last
        append, smaller than what was replayed of it: another file (moved away, emptied),
        none of it replayed."""
        if before < self._replayed:
            self._restart()
        self.budget.record(self._worker, size - self._replayed)

    def _restart(self) -> None:
        """Nothing of the file replayed: a replay begins at its start, this one's or the
        next start's."""
        self._replayed = self._read_to = 0
        self._digest = hashlib.sha256()
        with contextlib.suppress(OSError):  # a position of another file: never taken
            self._position.unlink(missing_ok=True)

    def _resume(self) -> None:
        """Go on from the position a process left mid-replay, if the file still begins
        with the bytes it replayed."""
        try:
            offset, digest = self._position.read_text().split()
            replayed = _prefix_digest(self.path, int(offset))
        except (OSError, ValueError):
            return
        if replayed is not None and replayed.hexdigest() == digest:
            self._replayed, self._digest = int(offset), replayed
            log.info("audit spool: its replay goes on at byte %s, where the last one got to",
                     offset)

    def replayed_to(self, offset: int) -> None:
        """Events up to byte ``offset`` are in Postgres: only the rest counts against
        ``spool_max_bytes`` (the file is emptied once all of it is), and a start goes
        on from there. A position not written (a full filesystem) only makes a start
        replay more of it again (said once until one is written)."""
        try:
            with self.path.open("rb") as handle:  # the batch, its drop marks written
                handle.seek(self._replayed)
                self._digest.update(handle.read(offset - self._replayed))
            self._position.write_text(f"{offset} {self._digest.hexdigest()}\n")
        except OSError as exc:
            if not self._position_failed:
                log.warning("audit spool: cannot keep how far its replay got (%s): a start "
                            "would replay more of it again", exc.strerror)
            self._position_failed = True
        else:
            self._position_failed = False
        self._replayed = offset
        self.budget.record(self._worker, self.unreplayed)

    def dropped(self, events: Iterable[AuditEvent]) -> None:
        """Those of ``events`` in the batch being replayed were counted dropped: marked so
        in place (one write each, made durable by :meth:`sync_dropped`), so that a replay
        after an end without a stop leaves them out, as it would otherwise store one
        dropped for a timeout and refuse one refused again. A mark that cannot be written
        is logged: its event may come back."""
        for event in events:
            if (where := self._lines.get(event.event_id)) is not None:
                self._mark(*where, event.event_id)

    def _mark(self, start: int, length: int, event_id: str | None,
              holds: bytes | None = None) -> None:
        """:func:`mark_dropped` on the spool; an error logged."""
        try:
            if self._marking is None:
                self._marking = os.open(self.path, os.O_RDWR)
            mark_dropped(self._marking, start, length, event_id, holds)
        except OSError as exc:
            log.error("audit spool: cannot mark the line at offset %d dropped (%s): a "
                      "replay after an end without a stop may read it again", start,
                      exc.strerror)

    def sync_dropped(self) -> None:
        """The marks :meth:`dropped` wrote, fsync'd (once per batch, not per event)."""
        if self._marking is None:
            return
        fd, self._marking = self._marking, None
        try:
            os.fsync(fd)
        except OSError as exc:
            log.error("audit spool: cannot fsync the marks of dropped events (%s)",
                      exc.strerror)
        finally:
            os.close(fd)

    def batches(self, size: int, start: int = 0, *, max_bytes: int | None = None,
                unreadable: Callable[[], None] = lambda: None,
                ) -> Iterator[tuple[list[AuditEvent], int]]:
        """:meth:`_batches`; SpoolUnreadable when the file cannot be read (EIO, EACCES): not
        an OSError, which a replay takes for Postgres's."""
        try:
            yield from self._batches(size, start, max_bytes=max_bytes, unreadable=unreadable)
        except OSError as exc:
            raise SpoolUnreadable(exc.strerror or str(exc)) from exc

    def _batches(self, size: int, start: int, *, max_bytes: int | None,
                 unreadable: Callable[[], None]) -> Iterator[tuple[list[AuditEvent], int]]:
        """Events from byte offset ``start`` in order, with the offset after each batch:
        ``size`` events, or fewer that reach ``max_bytes`` (the line that reaches it
        included, so that a batch holds at least one event).

        A torn last line (no trailing newline; cut on open, so only from an
        append whose failure could not be undone) is skipped and logged: the
        batch it belonged to was never acknowledged as spooled. A whole line that
        is no event (damaged on disk) is an event lost: skipped, logged,
        ``unreadable`` is called, and it is marked dropped (:meth:`dropped`), not to
        be counted again by the replay of a start after a kill. The line of an event a
        replay dropped is skipped.
        """
        batch: list[AuditEvent] = []
        weight = 0
        self._lines = {}
        with self.path.open("rb") as handle:
            handle.seek(start)
            offset = start
            for line in handle:
                offset += len(line)
                if not line.endswith(b"\n"):
                    log.error("audit spool: skipping a torn last line (%d bytes)", len(line))
                    continue
                if line.startswith(DROPPED):
                    continue
                try:
                    batch.append(AuditEvent.from_json(line.decode("utf-8")))
                    self._lines[batch[-1].event_id] = (offset - len(line), len(line))
                except (ValueError, TypeError, KeyError):
                    if offset > self._read_to:  # not told at an earlier, failed replay
                        log.error("audit spool: skipping an unreadable line at offset %d",
                                  offset - len(line))
                        unreadable()
                        self._mark(offset - len(line), len(line), None, line)
                    continue
                finally:
                    self._read_to = max(self._read_to, offset)
                weight += len(line)
                if len(batch) >= size or (max_bytes is not None and weight >= max_bytes):
                    yield batch, offset
                    batch, weight, self._lines = [], 0, {}
            if batch:
                yield batch, offset

    def clear(self) -> None:
        """Empty the spool once every event in it is safely in Postgres. A spool rotated
        away meanwhile stays away: created here, the next append would find it there and
        not fsync the directory. OSError when it cannot be emptied (made read-only): what
        was replayed of it stays so, out of the next replay and of the budget."""
        self.sync_dropped()  # the file of a damaged line marked after the last batch
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
        except FileNotFoundError:
            pass
        except OSError:
            self._uncleared = True
            raise
        else:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._uncleared = False
        self._restart()
        self.budget.record(self._worker, 0)
