"""Following a log file across rotation, as ``tail -F`` does.

``postfix logrotate`` (and logrotate's default) renames the file and starts a
new one; ``copytruncate`` empties it in place. A :class:`LogTail` keeps the
file it reads open, so what was written to a renamed file before the rename
is still read, to its end, before the new file is. It recognises a file
emptied in place even when the file has grown past the old position since:
the last bytes it read must still be where it read them.

A file emptied in place is read on in the copy ``copytruncate`` made beside it,
found by those bytes (:func:`copy_of`), to its end: the lines written after the
last read and before the copy are there only. Without such a copy (compressed
at once, or ``truncate -s 0``) it is read from its start, with a warning that
those lines may have been lost. A reader that stops keeps the
bytes' fingerprint with its position (:func:`fingerprint`), so the next one
recognises a file emptied in place while no one read it too: without it, a file
refilled past the position was read on from there, mid-line, the lines before
it never read.

Postfix (postlogd, or syslog) writes on in a renamed file until it reopens its
log, and logrotate's ``create`` makes the new file before its postrotate makes
Postfix do so (and grants the ACL that lets us open it). A :class:`LogTail`
therefore reads one file at a time: the old one, kept open, until the writer has
left it (the new file has bytes, so the old one's are all written: Postfix
writes to one file at a time), or it has been quiet for :data:`GRACE_SECONDS`;
only then the new one, from its start. The position saved is thus always in the
file being read, so a restart in the gap goes on in the old file (found by its
inode) and reads neither file's lines twice. A new file that cannot be opened
yet is tried again at the next read, the old one still open. A file read to its
end is followed by the one rotated after it, where one is beside the path (rotated
again while no one read it: :func:`rotated_after`), and by the file at the path
only then.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MARK_BYTES = 64
# A renamed file whose successor stays empty is left once it has had no new bytes for
# this long: the rename, the new file, the ACL and Postfix's reopen (logrotate's
# postrotate) take well under it.
GRACE_SECONDS = 5.0
# A log not there for this long, and no file of it open, is no rotation's gap: a
# maillog_path that names no file Postfix writes (a typo, maillog_file unset) tracked
# nothing, and said so only in the INFO line at the start.
MISSING_SECONDS = 60.0
# What a rotation adds to the log's name: logrotate's .1 and -20261207 (dateext),
# postfix logrotate's .20261123-151249; not a compressor's .gz, which cannot be read.
_ROTATED = re.compile(r"[.-]\d[\d.-]*")


def fingerprint(mark: bytes) -> bytes:
    """What a reader saves with its position for ``mark``, the bytes just before it."""
    return hashlib.blake2b(mark, digest_size=16).digest()


def matches(saved: bytes | None, mark: bytes) -> bool | None:
    """Whether ``saved`` is the fingerprint of ``mark``; None when there is none (the
    position was saved by an older version)."""
    if saved is None:
        return None
    return saved == fingerprint(mark)


def mark_at(path: Path, position: int) -> bytes | None:
    """The MARK_BYTES of the file at ``path`` before ``position``; None when it is shorter."""
    try:
        with path.open("rb") as file:
            if os.fstat(file.fileno()).st_size < position:
                return None
            return os.pread(file.fileno(), min(position, MARK_BYTES),
                            max(0, position - MARK_BYTES))
    except FileNotFoundError:
        return None


def copy_of(path: Path, position: int, holds: Callable[[bytes], bool]) -> Path | None:
    """The copy of the log at ``path`` beside it (``copytruncate``'s) whose bytes before
    ``position`` are those the log had (``holds`` says): the newest, when several are."""
    try:
        own = path.stat().st_ino
        with os.scandir(path.parent) as entries:
            found = [Path(e.path) for e in entries
                     if e.name.startswith(path.name) and e.is_file(follow_symlinks=False)
                     and e.inode() != own]
    except OSError:
        return None
    copies = []
    for file in found:
        with contextlib.suppress(OSError):  # removed meanwhile (logrotate's next round)
            if (mark := mark_at(file, position)) is not None and holds(mark):
                copies.append((file.stat().st_mtime, file))
    return max(copies, default=(0.0, None))[1]


def renamed_file(path: Path, inode: int) -> Path | None:
    """The file beside ``path`` that is the file ``inode`` (``path`` renamed by a rotation)."""
    try:
        with os.scandir(path.parent) as entries:
            return next((Path(e.path) for e in entries
                         if e.is_file(follow_symlinks=False) and e.inode() == inode), None)
    except OSError:
        return None


def rotated_after(path: Path, inode: int, written_ns: int) -> list[tuple[int, Path, int]]:
    """The files beside ``path`` rotated after the file ``inode`` (last written at
    ``written_ns``: rotated again while no one read it), as named by a rotation of
    ``path``'s, the file at the path aside: their mtime, path and size, in the order
    they were written."""
    try:
        own = path.stat().st_ino
        with os.scandir(path.parent) as entries:
            later = [(stat.st_mtime_ns, Path(entry.path), stat.st_size) for entry in entries
                     if entry.name.startswith(path.name)
                     and _ROTATED.fullmatch(entry.name, len(path.name))
                     and entry.is_file(follow_symlinks=False)
                     and entry.inode() not in (own, inode)
                     and (stat := entry.stat(follow_symlinks=False)).st_mtime_ns > written_ns]
    except OSError:
        return []
    return sorted(later)


class LogTail:
    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.inode = 0
        self.position = 0  # in the file ``inode``
        self._fd: int | None = None
        self._mark = b""  # the last bytes read, ending at ``position``
        self._clock = clock
        # Since when the open file, replaced at the path, has had no new bytes.
        self._quiet_since: float | None = None
        self._copy = False  # the open file is a copytruncate's copy: no one writes to it
        self._refused = False  # the path could not be opened (logged once)
        self._missing_since: float | None = None  # the path not there, no file open
        self._missing_told = False
        # The last read went on past a gap: lines written meanwhile are nowhere.
        self.lost_lines = False

    def mark_before(self, position: int) -> bytes:
        """The MARK_BYTES of the open file before ``position`` (b"": none open)."""
        if self._fd is None:
            return b""
        return os.pread(self._fd, min(position, MARK_BYTES), max(0, position - MARK_BYTES))

    def resume(self, inode: int, position: int) -> None:
        """Go on at ``position`` of the file ``inode`` (where an earlier run stopped)."""
        self.inode, self.position = inode, position

    def resume_in_place(self, inode: int, position: int, saved: bytes | None) -> bool:
        """Go on at ``position`` of the file at the path (``inode``, the one it was saved
        in), unless it was emptied in place since (``copytruncate``: shorter now, or other
        bytes before the position than ``saved`` fingerprints): then the rest of its copy
        beside it first, found by those bytes, and the file from its start. False when
        it was and no copy holds them (the file is read from its start)."""
        mark = mark_at(self.path, position)
        # None: saved by an older version, which kept no fingerprint: taken as it is.
        if mark is not None and matches(saved, mark) is not False:
            self.resume(inode, position)
            return True
        return self._resume_copy(position, lambda mark: matches(saved, mark) is True)

    def resume_renamed(self, renamed: Path, inode: int, position: int) -> bool:
        """Go on at ``position`` of the file ``inode``, renamed to ``renamed`` while
        no one read it (rotated while the service was stopped): it is read to its
        end, then the file at the path from its start. False if it is not that file."""
        fd = os.open(renamed, os.O_RDONLY)
        found = os.fstat(fd)  # the file opened, whatever was renamed since the scan
        if found.st_ino != inode or found.st_size < position:
            os.close(fd)
            return False
        self.close()
        self._fd, self.inode, self.position, self._mark = fd, inode, position, b""
        self._quiet_since, self._copy = None, False
        return True

    def resume_rotated_after(self, saved: float) -> None:
        """Go on at the start of the first file rotated after the file being resumed,
        which is gone (compressed): of those beside the path, the first written after
        ``saved`` (when the position was saved, seconds since the epoch)."""
        later = rotated_after(self.path, self.inode, int(saved * 1e9))
        with contextlib.suppress(OSError):  # removed meanwhile
            if later:
                self.resume_renamed(later[0][1], later[0][1].stat().st_ino, 0)

    def read(self, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` new bytes, and whether they start a new file (so a partial
        line held from the old one ends there)."""
        self.lost_lines = False
        restarted = self._fd is None and self._open()
        if self._fd is None:
            return b"", False
        if self._rewritten():  # the rest in its copy, if one is beside it, then from its start
            mark = self._mark
            if not (mark and self._resume_copy(self.position, lambda found: found.endswith(mark))):
                # Lines written after the last read and before it was emptied are nowhere.
                log.warning("maillog follower: %s was emptied in place and no copy of it is "
                            "beside it (compressed?): lines written after byte %d before it "
                            "was emptied may have been lost; reading it from its start",
                            self.path, self.position)
                self.position, self._mark, restarted = 0, b"", True
                self.lost_lines = True
        left = self._left()  # before the read: what was written before it left is read
        data = os.pread(self._fd, limit, self.position)
        if data:
            self._quiet_since = None
        elif left and (self._next_rotated() or self._open()):  # on to the next file
            restarted = True
            data = os.pread(self._fd, limit, self.position)
        self.position += len(data)
        self._mark = (self._mark + data)[-MARK_BYTES:]
        return data, restarted

    def _resume_copy(self, position: int, holds: Callable[[bytes], bool]) -> bool:
        """Go on at ``position`` of the copy of the log (:func:`copy_of`), if there is one."""
        copy = copy_of(self.path, position, holds)
        if copy is None or not self.resume_renamed(copy, copy.stat().st_ino, position):
            return False
        self._copy = True  # left as soon as read to its end
        return True

    def _next_rotated(self) -> bool:
        """Open the file rotated after the one read to its end, if it is beside the path
        (its lines come before the path's)."""
        assert self._fd is not None  # noqa: S101 - callers opened it
        later = rotated_after(self.path, self.inode, os.fstat(self._fd).st_mtime_ns)
        try:
            return bool(later) and self.resume_renamed(later[0][1], later[0][1].stat().st_ino, 0)
        except OSError:  # removed meanwhile (compressed, or logrotate's next round)
            return False

    def unread(self) -> int:
        """Bytes not read yet: the rest of the file being read and any newer one."""
        behind = 0
        if self._fd is not None:
            stat = os.fstat(self._fd)
            behind = max(stat.st_size - self.position, 0)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return behind
        if current.st_ino != self.inode:
            behind += current.st_size
            if self._fd is not None:  # and the files rotated in between
                behind += sum(size for _, _, size in
                              rotated_after(self.path, self.inode, stat.st_mtime_ns))
        return behind

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> bool:
        """Open the path instead of the file open, if any; True when it is another file
        than the one we were in. The open one is kept when the path cannot be opened:
        gone again, or not readable yet (created before the ACL that lets us read it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._missing()
            return False
        except PermissionError as error:
            if not self._refused:
                log.warning("cannot open %s (%s): trying again at each read, "
                            "reading on the file open if any", self.path, error.strerror)
            self._refused = True
            return False
        if self._refused or self._missing_told:
            log.info("can open %s now", self.path)
        self._refused = self._missing_told = False
        self._missing_since = None
        self.close()
        self._fd, self._quiet_since, self._copy = fd, None, False
        inode = os.fstat(fd).st_ino
        if inode == self.inode:
            # Resumed at a position (a start, a takeover): the bytes before it, or a file
            # emptied in place and refilled past it before a new byte was read is not told.
            self._mark = self._mark or self.mark_before(self.position)
            return False
        self.inode, self.position, self._mark = inode, 0, b""
        return True

    def _missing(self) -> None:
        """The path is not there: said once it has not been for MISSING_SECONDS while no
        file of it was open (a renamed one being read is a rotation's gap)."""
        if self._fd is not None:
            return
        now = self._clock()
        if self._missing_since is None:
            self._missing_since = now
        if not self._missing_told and now - self._missing_since >= MISSING_SECONDS:
            self._missing_told = True
            log.warning("maillog follower: %s does not exist: no delivery is tracked until "
                        "it does (is it the maillog_file Postfix writes?); trying again at "
                        "each read", self.path)

    def _rewritten(self) -> bool:
        """Emptied in place (copytruncate), perhaps refilled past our position since."""
        assert self._fd is not None  # noqa: S101 - callers opened it
        if os.fstat(self._fd).st_size < self.position:
            return True
        start = self.position - len(self._mark)
        return bool(self._mark) and os.pread(self._fd, len(self._mark), start) != self._mark

    def _left(self) -> bool:
        """Whether the writer has left the open file for another one at the path: that
        one has bytes, or ours has had none new for GRACE_SECONDS (counted from the first
        read that found it replaced and at its end)."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:  # renamed, the new one not there yet: stay on the old
            return False
        if current.st_ino == self.inode:
            return False
        if self._copy:
            return True
        now = self._clock()
        if self._quiet_since is None:
            self._quiet_since = now
        return current.st_size > 0 or now - self._quiet_since >= GRACE_SECONDS
