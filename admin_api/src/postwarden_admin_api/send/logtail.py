"""Following a log file across rotation, as ``tail -F`` does.

``postfix logrotate`` (and logrotate's default) renames the file and starts a
new one; ``copytruncate`` empties it in place. A :class:`LogTail` keeps the
file it reads open, so what was written to a renamed file before the rename
is still read, to its end, before the new file is. It recognises a file
emptied in place even when the file has grown past the old position since:
the last bytes it read must still be where it read them.
"""

from __future__ import annotations

import os
from pathlib import Path

MARK_BYTES = 64


class LogTail:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.inode = 0
        self.position = 0  # in the file ``inode``
        self._fd: int | None = None
        self._mark = b""  # the last bytes read, ending at ``position``

    def resume(self, inode: int, position: int) -> None:
        """Go on at ``position`` of the file ``inode`` (where an earlier run stopped)."""
        self.inode, self.position = inode, position

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
        return True

    def read(self, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` new bytes, and whether they start a new file (so a partial
        line held from the old one ends there)."""
        restarted = self._fd is None and self._open()
        if self._fd is None:
            return b"", False
        if self._rewritten():
            self.position, self._mark, restarted = 0, b"", True
        data = os.pread(self._fd, limit, self.position)
        if not data and self._replaced():  # the old file is read to its end: on to the new
            self.close()
            restarted = self._open() or restarted
            if self._fd is None:
                return b"", restarted
            data = os.pread(self._fd, limit, self.position)
        self.position += len(data)
        self._mark = (self._mark + data)[-MARK_BYTES:]
        return data, restarted

    def unread(self) -> int:
        """Bytes not read yet: the rest of the file being read and any newer one."""
        behind = 0
        if self._fd is not None:
            behind = max(os.fstat(self._fd).st_size - self.position, 0)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return behind
        if current.st_ino != self.inode:
            behind += current.st_size
        return behind

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> bool:
        """Open the path; True when it is another file than the one we were in."""
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        inode = os.fstat(self._fd).st_ino
        if inode == self.inode:
            return False
        self.inode, self.position, self._mark = inode, 0, b""
        return True

    def _rewritten(self) -> bool:
        """Emptied in place (copytruncate), perhaps refilled past our position since."""
        assert self._fd is not None  # noqa: S101 - callers opened it
        if os.fstat(self._fd).st_size < self.position:
            return True
        start = self.position - len(self._mark)
        return bool(self._mark) and os.pread(self._fd, len(self._mark), start) != self._mark

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:  # renamed, the new one not there yet: stay on the old
            return False
