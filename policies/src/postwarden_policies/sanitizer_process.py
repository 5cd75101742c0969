"""nh3 in a child process that can be stopped.

nh3 cannot be interrupted once it runs, and :mod:`postwarden_policies.html_cost`
models its tree builder only as far as shapes have been found: one it misjudges
(``<div></a><a>`` repeated to 200 KB: 0.36 s) holds the thread that called it, and
the more text, the longer. So HTML over :data:`ISOLATE_CHARS` is cleaned in a child
process, killed when it has not answered within :data:`TIME_LIMIT_SECONDS`; no part
holds the filter longer, whatever the model says. The model's estimate runs there too:
a pass over every tag in Python, seconds of CPU on megabytes. Smaller HTML stays in process: the
round trip costs more than nh3 spends on it, and a misjudged shape that small costs
tens of milliseconds.

Children start on first use (:func:`main`, from the same source tree,
with little of the environment), at most :data:`MAX_CHILDREN` at once, and are kept while
they answer; one killed or dead is replaced at the next use. Requests and answers are
pickles framed by their length, on pipes between this process and the children it
started.

A child reads the package from disk when it starts, which after an upgrade in place is
not the code its parent runs: it could lack the handler, or clean otherwise than the
parent's policy expects. So each side takes the package's :data:`FINGERPRINT` when it
imports this module, and the parent raises :class:`SanitizerCodeChanged`, which defers
the message until a restart, when the files on disk no longer give its own: before it
starts a child (about 1 ms: new code that cannot even be imported would crash the child
before any check of its own), and, for files that change while the child starts, when
the child, given the parent's in :data:`FINGERPRINT_VARIABLE`, finds its own differs,
serves nothing and exits with :data:`CODE_DIFFERS_STATUS`. The variable, the status and
where :func:`main` lives are a contract between versions: a later version's child must
keep them, or a parent of this one sees a crash again.

Exceptions, each straight from Exception (the caller treats each otherwise)::

    ChildFailed           the child died or broke the protocol: maybe the part's doing
    SanitizerBusy         no child came free in time: overload
    SanitizerCodeChanged  the child refused its parent's code: a restart is due
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

ISOLATE_CHARS = 64 * 1024
TIME_LIMIT_SECONDS = 10.0
MAX_CHILDREN = 4
# A child that took a request this large is retired: its heap would keep the peak.
RETIRE_BYTES = 4 * 1024 * 1024
# How often a child checks that the process that started it is still there.
ORPHAN_CHECK_SECONDS = 1.0

_FRAME = struct.Struct("!I")
_READ_CHUNK = 1 << 20
# The source tree this module was imported from: the child must run the same code.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[1])
_PASSED_PREFIXES = ("MALLOC_", "PYTHONMALLOC")
_PASSED = frozenset({"GLIBC_TUNABLES", "LD_LIBRARY_PATH"})
FINGERPRINT_VARIABLE = "POSTWARDEN_SANITIZER_CODE"
CODE_DIFFERS_STATUS = 75  # EX_TEMPFAIL (sysexits.h); a crash exits 1, a signal below 0

# What the handler returns, as the caller declares it (a "module:function" string
# tells the type checker nothing).
Answer_co = TypeVar("Answer_co", covariant=True)
# Instances alive in this process, for the one fork hook (_before_fork): a hook each
# would keep every instance ever made alive (hooks cannot be unregistered).
_live: weakref.WeakSet[SanitizerProcesses[object]] = weakref.WeakSet()
# Held by a forking thread from before the fork to after it: one fork at a time takes
# the instances' locks (two cannot take them in opposite orders), no instance is made
# meanwhile, and the locks released after the fork are those taken before (_forking).
_fork_lock = threading.Lock()
_forking: list[SanitizerProcesses[object]] = []


def code_fingerprint(package: Path) -> str:
    """SHA-256 over the package's modules: each name and content, in order of name."""
    digest = hashlib.sha256()
    for module in sorted(package.glob("*.py")):
        source = module.read_bytes()
        digest.update(b"%s\0%d\0" % (module.name.encode(), len(source)))
        digest.update(source)
    return digest.hexdigest()


# The code this process runs, as read at its import (about 1 ms): an upgrade in place
# changes the files later, not the modules this process has loaded.
FINGERPRINT = code_fingerprint(Path(__file__).resolve().parent)


def _on_disk() -> str:
    """The fingerprint of the package a child would import now."""
    return code_fingerprint(Path(_SOURCE_ROOT) / __name__.split(".")[0])


def _child_environment() -> dict[str, str]:
    """This source tree and this process's code, and the allocator's and loader's
    settings an admin gave the milter (README, Memory); nothing else (the database URL
    stays here)."""
    passed = {name: value for name, value in os.environ.items()
              if name.startswith(_PASSED_PREFIXES) or name in _PASSED}
    return passed | {"PYTHONPATH": _SOURCE_ROOT, FINGERPRINT_VARIABLE: FINGERPRINT}


class ChildFailed(Exception):
    """The child died or broke the protocol (not a timeout)."""


class SanitizerBusy(Exception):
    """No child came free in time: the work is not done, and no verdict should say it was."""


class SanitizerCodeChanged(Exception):
    """A child refused to serve: the package on disk is no longer the code this process
    runs (upgraded in place). Not the part's fault, and every child would refuse until
    this process restarts: the work is not done, and no verdict should say it was."""


class _Child:
    def __init__(self, handler: str) -> None:
        # Looked at here too, before the child imports anything: new code that cannot
        # even be imported (pip halfway through, a dependency missing) would crash it,
        # and a crash becomes a notice (ChildFailed), not a deferral.
        if _on_disk() != FINGERPRINT:
            raise SanitizerCodeChanged(
                f"the postwarden_policies package in {_SOURCE_ROOT} is not the code this "
                "process runs (upgraded in place?), and every HTML part over "
                f"{ISOLATE_CHARS} characters needs a sanitizer child: none was started")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                # -P: no working directory on the path (it is anything, maybe writable).
                [sys.executable, "-P", "-c", f"from {__name__} import main; main()", handler],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_environment(),
            )
        except OSError as exc:  # out of processes, descriptors or memory
            raise ChildFailed(f"cannot start a sanitizer child: {exc}") from exc
        # Both are pipes (PIPE above), never None. Writing without blocking: a child
        # that stopped reading must not hold the caller past the deadline either.
        self._stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self._proc.stdout  # type: ignore[assignment]
        os.set_blocking(self._stdin.fileno(), False)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def ask(self, request: bytes, deadline: float) -> bytes | None:
        """The child's answer, or None when the deadline passed first."""
        if not self._write(_FRAME.pack(len(request)) + request, deadline):
            return None
        header = self._read(_FRAME.size, deadline)
        if header is None:
            return None
        return self._read(_FRAME.unpack(header)[0], deadline)

    def _write(self, data: bytes, deadline: float) -> bool:
        fd = self._stdin.fileno()
        pending = memoryview(data)
        while pending:
            if not _ready(fd, select.POLLOUT, deadline):
                return False
            try:
                pending = pending[os.write(fd, pending):]
            except BlockingIOError:
                continue
            except OSError as exc:  # BrokenPipeError: it died
                raise self._gone(f"sanitizer child {self.pid}: {exc}", deadline) from exc
        return True

    def _read(self, size: int, deadline: float) -> bytes | None:
        fd = self._stdout.fileno()
        chunks: list[bytes] = []
        while size:
            if not _ready(fd, select.POLLIN, deadline):
                return None
            chunk = os.read(fd, min(size, _READ_CHUNK))
            if not chunk:
                raise self._gone(f"sanitizer child {self.pid} exited", deadline)
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _gone(self, failure: str, deadline: float) -> ChildFailed | SanitizerCodeChanged:
        """Why the child is gone: it refused this process's code, or it died (``failure``
        says how)."""
        try:  # it is exiting (its pipes are closed): the status comes at once
            status = self._proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            status = None
        if status != CODE_DIFFERS_STATUS:
            return ChildFailed(failure)
        return SanitizerCodeChanged(
            f"sanitizer child {self.pid} refused to serve: the postwarden_policies package "
            f"in {_SOURCE_ROOT} is not the code this process runs (upgraded in place?), and "
            f"every HTML part over {ISOLATE_CHARS} characters needs a child")

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait()
        self.forget()

    def stop(self) -> None:
        """End of input: it exits when done, or is killed a second later."""
        self._stdin.close()
        try:
            self._proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stdout.close()

    def forget(self) -> None:
        """Close this end of the pipes, leaving the process as it is (after fork:
        it is the parent's child, not ours)."""
        self._stdin.close()
        self._stdout.close()


def _ready(fd: int, event: int, deadline: float) -> bool:
    """Whether ``fd`` is ready for ``event`` (or hung up) before the deadline."""
    # poll, not select: a milter's descriptors go past select's 1024.
    poller = select.poll()
    poller.register(fd, event)
    wait = deadline - time.monotonic()
    return wait > 0 and bool(poller.poll(wait * 1000))


class SanitizerProcesses(Generic[Answer_co]):
    """Children that answer one request at a time each, within a time limit, with
    ``handler`` ("module:function"), called with the request's items; ``Answer_co`` is
    what the handler returns."""

    def __init__(self, handler: str, max_children: int = MAX_CHILDREN,
                 time_limit: float = TIME_LIMIT_SECONDS) -> None:
        self.handler = handler
        self.time_limit = time_limit
        self._slots = threading.BoundedSemaphore(max_children)
        self._children: set[_Child] = set()  # idle or busy
        self._idle: list[_Child] = []
        # Held across a fork (_before_fork), so a child started meanwhile is known
        # to forget().
        self._lock = threading.Lock()
        with _fork_lock:
            _live.add(self)

    def run(self, request: tuple[object, ...], deadline: float | None = None) -> Answer_co | None:
        """The child's answer to ``request`` (the handler's arguments, picklable), or
        None when it did not come within the time limit or by ``deadline`` (a
        time.monotonic() value; the child is killed).
        Raises :class:`SanitizerBusy` when no child was free by the deadline (or
        within the time limit, without one), :class:`ChildFailed` if the child died,
        :class:`SanitizerCodeChanged` if it refused this process's code."""
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        now = time.monotonic()
        if not self._slots.acquire(timeout=max((deadline or now + self.time_limit) - now, 0)):
            raise SanitizerBusy(f"every sanitizer child stayed busy ({self.time_limit:g} s "
                                "or the message's deadline)")
        try:
            until = time.monotonic() + self.time_limit
            if deadline is not None:
                until = min(until, deadline)
                if until <= time.monotonic():
                    return None  # the message's time is up: no child is worth starting on it
            child = self._take()
            try:
                answer = child.ask(payload, until)
            except BaseException:  # a request its child died on goes to no other
                self._discard(child)
                raise
            if answer is None:
                self._discard(child)
                return None
            if len(payload) > RETIRE_BYTES:  # its heap keeps the peak: start afresh
                self._discard(child)
            else:
                with self._lock:
                    self._idle.append(child)
        finally:
            self._slots.release()
        result: Answer_co = pickle.loads(answer)  # noqa: S301 - written by our own child
        return result

    def _take(self) -> _Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    return child
                self._children.discard(child)  # killed while idle: OOM killer, an admin
                child.forget()
            child = _Child(self.handler)
            self._children.add(child)
            return child

    def _discard(self, child: _Child) -> None:
        child.kill()
        with self._lock:
            self._children.discard(child)

    def close(self) -> None:
        """Stop the idle children (at exit)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._children.difference_update(idle)
        for child in idle:
            child.stop()

    def _forget(self) -> None:
        """In a forked process: let go of every child without stopping it (they are the
        parent's), then release the lock the fork held."""
        for child in self._children:
            child.forget()
        self._children.clear()
        self._idle.clear()
        self._lock.release()


def _before_fork() -> None:
    _fork_lock.acquire()
    _forking.extend(_live)
    for processes in _forking:
        processes._lock.acquire()


def _after_fork_in_parent() -> None:
    for processes in _forking:
        processes._lock.release()
    _forking.clear()
    _fork_lock.release()


def _after_fork_in_child() -> None:
    for processes in _forking:
        processes._forget()
    _forking.clear()
    _fork_lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def serve(handle: Any, source: IO[bytes], sink: IO[bytes]) -> None:
    """The child's loop: a request in, ``handle(*request)`` out, until end of input."""
    while len(header := source.read(_FRAME.size)) == _FRAME.size:
        size = _FRAME.unpack(header)[0]
        if len(body := source.read(size)) < size:
            return  # the parent went away while writing
        request = pickle.loads(body)  # noqa: S301 - written by our parent
        answer = pickle.dumps(handle(*request), protocol=pickle.HIGHEST_PROTOCOL)
        sink.write(_FRAME.pack(len(answer)) + answer)
        sink.flush()


def _exit_when_orphaned(parent: int) -> None:
    # End of input comes only between requests: a parent killed meanwhile would
    # leave nh3 running on its part for as long as it takes.
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)


def main() -> None:
    """A child: serves the handler its command line names, if it runs its parent's code."""
    if os.environ.get(FINGERPRINT_VARIABLE) != FINGERPRINT:  # before importing the handler
        sys.stderr.write(f"postwarden sanitizer child {os.getpid()}: the package on disk is "
                         "not its parent's code; restart the milter after an upgrade\n")
        sys.stderr.flush()
        os._exit(CODE_DIFFERS_STATUS)
    # Its life is its parent's: the terminal's ^C or hangup is for the parent to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The mask of the thread that started it, which holds the milter's signals: SIGTERM
    # (`kill PID`, an admin's or a script's) would wait, unheard, as long as the child.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    module, _, name = sys.argv[1].partition(":")
    serve(getattr(importlib.import_module(module), name), sys.stdin.buffer, sys.stdout.buffer)

