"""Several milter processes on one socket (``processes`` > 1).

One Python process uses about one core (the GIL), and parsing and sanitizing
mail is CPU work. So the parent registers with libmilter and opens the
socket, then forks the workers: each accepts connections on the inherited
socket (the kernel spreads them) and runs the single-process milter with its
own threads, pool, audit queue and spool file. They share the duplicate
table and the spools' byte budget (shared memory made before the fork); the
parent serves the metrics endpoint and merges theirs into it.

The parent forks from its only thread that touches anything a worker uses
(the metrics endpoint's thread never does). It passes SIGHUP on to every
worker as SIGUSR1, and SIGTERM or SIGINT as SIGUSR2: libmilter's own signal
thread in a worker waits for SIGHUP, SIGTERM and SIGINT, and could take one from our
handlers. A worker that dies is replaced, after a pause that grows while
workers keep dying; with policies from ``policy_dir`` the replacement starts
with the set the others run, which the parent keeps in step with them (it
reloads on the same signals and polls the same files), not with what the
directory holds now: an edit the workers refused would stop every
replacement. A first worker that exits with a configuration error as
it starts (no policy set it can load from the database, say) stops the
milter with that exit code, as the single process would. When no worker
runs and none is due to start soon, the parent exits 1 rather than keep a
socket nobody answers (Postfix would wait on each connection instead of
applying milter_default_action at once); the service manager restarts the
milter. A worker whose parent dies gets a stop from the kernel, so none
goes on serving unsupervised. A worker stopping alone leaves a unix
socket's file in place (.listener); should the file still go (an admin, a
cleanup job), the parent exits 1 so the service manager starts a milter
Postfix can reach. Once stopping, the parent closes its listening socket
first, so that no connection waits for a worker that is stopping too, and
removes the socket's file if it is still the one it made.

Only the parent speaks to systemd (``NotifyAccess=main``). Each worker writes
to a pipe of its own when it serves, and again after a reload it was passed;
the parent says ``READY=1`` once every worker position has a worker serving,
at start and after the ``RELOADING=1`` it says on SIGHUP.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

from postwarden_policies import PoliciesError
from postwarden_policies.systemd_notify import SystemdNotifier

from . import libmilter
from .app import EXIT_CONFIG, MilterProcess, Worker, run_process
from .duplicates import DuplicateDetector
from .errors import NotYet
from .listener import disown_listener, remove_socket_file, socket_file, socket_file_lost
from .metrics_merge import MergedMetrics
from .reload import RunningSet
from .settings import MilterSettings
from .signals import PendingSignals, signals_blocked, signals_handled
from .spool import SpoolBudget, SpoolDirLock
from .startup_checks import preflight, refuse_served_socket, serve_metrics, socket_refused

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2
RESTART_PAUSES = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # by quick deaths in a row
STEADY_SECONDS = 60.0  # a worker that ran this long resets the pause
PR_SET_PDEATHSIG = 1  # from linux/prctl.h
# Beyond message_timeout_seconds, before SIGKILL: a worker's shutdown after its last
# transaction (the policy reloader's up to 10 s, the audit flush's up to 30 s).
STOP_GRACE_SECONDS = 45.0
# No worker running: connections wait in the socket's backlog for the next one to start,
# at most this long (more, and the parent exits 1: Postfix is refused, not kept waiting).
NO_WORKER_SECONDS = 2.0


def worker_settings(settings: MilterSettings, index: int) -> MilterSettings:
    """Worker ``index``'s share of the milter-wide bounds held in process memory: the
    shares add up to each bound, none below one (settings refuses a bound below
    ``processes``). ``spool_max_bytes`` is not split: the workers count against one
    SpoolBudget."""
    return dataclasses.replace(
        settings,
        max_concurrency=_share(settings.max_concurrency, settings.processes, index),
        audit_queue_size=_share(settings.audit_queue_size, settings.processes, index),
    )


def _share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split in ``parts``: the first take the remainder."""
    return total // parts + (index < total % parts)


@dataclass
class _Slot:
    """One worker position: its index stays, its process is replaced when it dies."""

    index: int
    pid: int = 0
    channel: socket.socket | None = None  # the parent's end of the metrics channel
    started: float = 0.0
    # Its first process: a configuration error as it starts stops the milter (one
    # that served STEADY_SECONDS did start: a later exit 2 is only replaced).
    first: bool = True
    quick_deaths: int = 0
    restart_at: float | None = None
    readiness: int | None = None  # the parent's end of its process's pipe (_ToParent)
    serving: bool = False  # its process said so, since it started or was passed a reload


class _ToParent:
    """A worker's notifier: it tells the parent when it serves; the parent speaks to
    systemd for all its workers (RELOADING and STOPPING included)."""

    def __init__(self, pipe: int) -> None:
        self._pipe = pipe

    def ready(self) -> None:
        with contextlib.suppress(OSError):  # the parent gone: the kernel stops this worker
            os.write(self._pipe, b".")

    def reloading(self) -> None:  # the parent says it
        pass

    def stopping(self) -> None:  # the parent says it
        pass


class Supervisor:
    def __init__(self, settings: MilterSettings, notifier: SystemdNotifier) -> None:
        self.settings = settings
        self._notifier = notifier
        self._ready_owed = True  # to systemd, once every worker serves: at start, after reloads
        self._duplicates = DuplicateDetector(settings.duplicate_window_seconds)
        self._spool_budget = SpoolBudget(settings.spool_max_bytes, settings.processes)
        self._spool_dir = SpoolDirLock(settings.spool_dir)
        self._metrics = MergedMetrics()
        self._slots = [_Slot(index) for index in range(settings.processes)]
        self._signals = PendingSignals()
        self._policies: RunningSet | None = None  # policy_dir's set, as the workers run it
        self._next_poll = 0.0
        self._opened = False  # libmilter opened the socket: later errors are not its
        self._socket_file: tuple[int, int] | None = None  # (device, inode) of a unix socket
        self._exit_code = 0

    def run(self) -> int:
        """Open the socket, keep the workers running until a stop signal; the exit code."""
        # First: a SIGHUP or SIGTERM before the workers exist is acted on before they
        # are forked (_stopped_while_starting).
        stop_metrics = None
        with signals_handled(self._signals.put):
            try:
                # As one process does, before the socket opens.
                self._policies = preflight(self.settings).policies
                refuse_served_socket(self.settings.milter_socket)
                stop_metrics = serve_metrics(self.settings, self._metrics.serve)
                try:
                    libmilter.open_then(self.settings.milter_socket,
                                        self.settings.milter_socket_mode, self._supervise)
                except Exception:  # pymilter raises its own error type
                    if self._opened:
                        raise
                    raise socket_refused(self.settings.milter_socket) from None
            finally:
                if stop_metrics is not None:
                    stop_metrics()
        return self._exit_code

    def _supervise(self) -> None:
        self._opened = True
        self._socket_file = socket_file(self.settings.milter_socket)
        try:
            if not self._stopped_while_starting():
                # Only now: a stop during the start forks none (told, not this).
                log.info("postwarden milter %s starting %d worker processes on %s",
                         self.settings.instance_name, len(self._slots),
                         self.settings.milter_socket)
                self._start_workers()
                while self._watch():
                    time.sleep(TICK_SECONDS)
        finally:
            disown_listener(self.settings.milter_socket)  # new connections: refused
            # As libmilter's stop does, which the parent never runs (the workers disown
            # the socket before theirs, .listener): a file left would say a milter serves.
            remove_socket_file(self.settings.milter_socket, self._socket_file)
            self._stop_workers()
        log.info("postwarden milter stopped")

    def _stopped_while_starting(self) -> bool:
        """Whether a stop came while the parent started, before any worker exists: it
        ends the start here (no worker forked only to be stopped: each would start its
        threads, pool and spool first). Reloads wait for the workers, which _watch
        passes them on to, as ever."""
        reloads, stop = self._signals.take()
        if stop is None:
            for name in reloads:
                self._signals.put(signal.Signals[name])
            return False
        log.info("%s: stopping before the workers start", stop)
        self._notifier.stopping()
        return True

    def _start_workers(self) -> None:
        for slot in self._slots:
            try:
                self._fork(slot)
            except OSError as exc:  # at start: exit 1, the service manager tries again
                raise NotYet(f"cannot start worker process {slot.index}: "
                             f"{exc.strerror or exc}") from None

    def _watch(self) -> bool:
        """One round: pass signals on, reap and replace workers; False once stopping."""
        self._hear_workers()  # first: what they said before a reload passed on below
        reloads, stop = self._signals.take()  # any number of reload signals: one reload
        if stop is not None:
            log.info("%s: stopping the workers", stop)
            self._notifier.stopping()
            return False
        if reloads:
            log.info("%s: passed on to the workers", "/".join(reloads))
            if not self._ready_owed:  # as one process: not before start-up's READY=1
                self._notifier.reloading()
            self._ready_owed = True
            for slot in self._slots:
                slot.serving = False
            self._reload_policies()
            self._send(signal.SIGUSR1)
        self._poll_policies()
        self._reap()
        if socket_file_lost(self.settings.milter_socket, self._socket_file):
            self._exit_code = 1
        if self._exit_code:
            return False
        self._spool_dir.follow()  # before a replacement, which inherits its lock
        now = time.monotonic()
        for slot in self._slots:
            if slot.pid == 0 and slot.restart_at is not None and now >= slot.restart_at:
                self._replace(slot)
        if not any(slot.pid for slot in self._slots):
            due = min(slot.restart_at or now for slot in self._slots)
            if due - now > NO_WORKER_SECONDS:
                log.error("no worker process runs and the next starts in %.1f s: stopping so "
                          "that Postfix is refused at once, and the service manager restarts "
                          "the milter", due - now)
                self._exit_code = 1
                return False
        return True

    def _hear_workers(self) -> None:
        """Note the workers that said they serve; READY=1 to systemd once all do."""
        for slot in self._slots:
            if slot.readiness is None:
                continue
            with contextlib.suppress(BlockingIOError):  # nothing said
                if os.read(slot.readiness, 256):  # b"": its process ended, reaped below
                    slot.serving = True
        if self._ready_owed and all(slot.serving for slot in self._slots):
            self._ready_owed = False
            self._notifier.ready()

    def _reload_policies(self) -> None:
        """Reload the copy of policy_dir's set kept for replacements, as the workers do."""
        if self._policies is None:
            return
        files = self._policies.files
        # Refused (a directory that cannot be listed too): the workers say why, and keep
        # their set, as the copy stays.
        with contextlib.suppress(PoliciesError):
            self._policies = RunningSet(files.load(), files)

    def _poll_policies(self) -> None:
        """Follow policy_dir's changes as the workers' own polls do (.reload)."""
        poll = self.settings.policy_poll_seconds
        now = time.monotonic()
        if self._policies is None or poll <= 0 or now < self._next_poll:
            return
        self._next_poll = now + poll
        if self._policies.files.settled():
            self._reload_policies()

    def _replace(self, slot: _Slot) -> None:
        """Start a dead worker's successor; when the system cannot (no memory, no process
        or descriptor left), try again later instead of leaving the others to stop."""
        try:
            self._fork(slot)
        except OSError as exc:
            pause = self._schedule_restart(slot, steady=False)
            log.error("worker %d: cannot start a process (%s): trying again in %.1f s",
                      slot.index, exc.strerror or exc, pause)

    def _fork(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair()
        heard, said = os.pipe()
        os.set_blocking(heard, False)
        sys.stdout.flush()
        sys.stderr.flush()
        # The worker starts with our signals held: until its handlers are in place a
        # reload would kill it (default action), and a stop would skip the drain.
        parent = os.getpid()
        with signals_blocked():
            try:
                pid = os.fork()
            except OSError:
                ours.close()
                theirs.close()
                os.close(heard)
                os.close(said)
                raise
            if pid == 0:  # the worker
                code = 1
                try:
                    ours.close()
                    os.close(heard)
                    self._metrics.close_in_worker()  # the endpoint, the other workers' channels
                    _stop_with(parent)
                    code = run_process(MilterProcess(worker_settings(self.settings, slot.index),
                                                     _ToParent(said),
                                                     self._worker(slot, theirs, parent)))
                except BaseException:  # a worker's last word, before _exit
                    log.exception("worker %d failed", slot.index)
                finally:
                    logging.shutdown()
                    os._exit(code)
        theirs.close()
        os.close(said)
        slot.pid, slot.channel, slot.started, slot.restart_at = pid, ours, time.monotonic(), None
        slot.readiness, slot.serving = heard, False
        self._metrics.add(ours)
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _worker(self, slot: _Slot, channel: socket.socket, parent: int) -> Worker:
        """What the worker in ``slot`` gets: its channel, and what all workers share."""
        return Worker(slot.index, self._duplicates, self._spool_budget, channel, self._policies,
                      parent)

    def _reap(self) -> None:
        for slot in self._slots:
            if slot.pid == 0:
                continue
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
            if pid == 0:
                continue
            self._ended(slot, os.waitstatus_to_exitcode(status))

    def _ended(self, slot: _Slot, code: int) -> None:
        ran, pid = time.monotonic() - slot.started, slot.pid
        self._release(slot)
        if code == EXIT_CONFIG and slot.first and ran < STEADY_SECONDS:
            log.error("worker %d could not start (exit %d): stopping", slot.index, code)
            self._exit_code = code
            return
        slot.first = False
        pause = self._schedule_restart(slot, steady=ran >= STEADY_SECONDS)
        self._metrics.worker_restarts.inc()
        log.error("worker %d (pid %d) ended (%s) after %.1f s: replacing it in %.1f s",
                  slot.index, pid, _describe(code), ran, pause)

    @staticmethod
    def _schedule_restart(slot: _Slot, steady: bool) -> float:
        """The slot's next start: later with each quick death (or failed start) in a row;
        the pause."""
        slot.quick_deaths = 0 if steady else slot.quick_deaths + 1
        pause = RESTART_PAUSES[min(slot.quick_deaths, len(RESTART_PAUSES) - 1)]
        slot.restart_at = time.monotonic() + pause
        return pause

    def _release(self, slot: _Slot) -> None:
        if slot.channel is not None:
            self._metrics.remove(slot.channel)
            slot.channel.close()
            slot.channel = None
        if slot.readiness is not None:
            os.close(slot.readiness)
            slot.readiness = None
        slot.pid, slot.serving = 0, False

    def _send(self, signum: int) -> None:
        for slot in self._slots:
            if slot.pid:
                os.kill(slot.pid, signum)

    def _stop_workers(self) -> None:
        """A stop to each worker, wait for their orderly stop, SIGKILL the late ones."""
        self._send(signal.SIGUSR2)
        deadline = time.monotonic() + self.settings.message_timeout_seconds + STOP_GRACE_SECONDS
        while any(slot.pid for slot in self._slots) and time.monotonic() < deadline:
            for slot in self._slots:
                if slot.pid and os.waitpid(slot.pid, os.WNOHANG)[0]:
                    self._release(slot)
            time.sleep(TICK_SECONDS / 4)
        for slot in self._slots:
            if slot.pid:
                log.error("worker %d (pid %d) did not stop in time: killed", slot.index, slot.pid)
                os.kill(slot.pid, signal.SIGKILL)
                os.waitpid(slot.pid, 0)
                self._release(slot)


def _stop_with(parent: int) -> None:
    """Have the kernel send this worker a stop (SIGUSR2) when the parent dies (SIGKILL, a crash):
    no worker goes on serving alone, unsupervised. Held until its handlers are in place."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR2) != 0:
        log.warning("worker: prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGUSR2)


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit {code}"
