"""Start-up and shutdown of the milter process, alone or as one worker of several
(:mod:`.supervisor` forks them once it has opened the socket).

Order matters. Our signals are held from the command's first line
(``__main__``), and our handlers come first: they only queue the request,
so a reload or a stop asked for while the milter starts is done once it
serves (a default action would kill it). Everything that can refuse to start
(settings, schema, policies, a unix socket another milter serves) runs before
the socket opens (with workers, the parent checks the schema and loads a
``policy_dir`` set, which it hands to the workers; a worker that cannot load
its set from the database stops the milter). Our threads are started with
our signals (``SIGNALS``) blocked, and libmilter runs on its own thread, so
the signals reach the main thread's Python handlers (libmilter would
otherwise treat SIGHUP as "stop"). A stop refuses new transactions (421),
lets open ones finish (bounded; connections idle between messages are not
waited for), then stops libmilter (which stops accepting) and hangs up the
connections left idle, drains the audit queue, closes the pool, stops the loop
and joins our threads (not libmilter's listener, which sees its stop only
when its poll for a connection times out, every 5 s).

The service manager hears ``READY=1`` once the socket accepts connections,
said by the main thread once its signals are unblocked (libmilter's signal
thread would take a SIGHUP the main thread still blocks, and stop);
``RELOADING=1`` and ``READY=1`` around a reload asked for by signal, from the
reload thread; ``STOPPING=1`` as serve() begins a stop. Signal handlers say
nothing themselves: one run between two steps of the main thread would say
things out of order. A worker tells its parent instead, which speaks for all
of them (.supervisor).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

import asyncpg

from postwarden_policies import PoliciesError
from postwarden_policies.occasional import Occasional, log_unsaid
from postwarden_store import database_problem

from . import libmilter
from .audit_pipeline import REFUSALS, AuditPipeline
from .duplicates import DuplicateDetector
from .errors import MilterError, NotYet, StartupError
from .journal import AuditJournal
from .listener import (
    disown_listener,
    hang_up,
    remove_socket_file,
    socket_file,
    socket_file_lost,
)
from .loopthread import LoopThread
from .metrics import Metrics
from .metrics_merge import answer_scrapes
from .reload import PolicyReloader, RunningSet
from .services import OpenTransactions, Services
from .session import Settling, Slots
from .settings import MilterSettings
from .signals import PendingSignals, signals_blocked, signals_handled
from .spool import AuditSpool, SpoolBudget
from .startup_checks import (
    check_schema,
    no_policy_source,
    policies_refused,
    refuse_served_socket,
    serve_metrics,
    socket_refused,
)

log = logging.getLogger(__name__)

PROG = "postwarden-milter"
EXIT_CONFIG = 2
# SIGUSR1 (reload) and SIGUSR2 (stop) are what the parent sends its workers:
# libmilter's own signal thread waits for the other three, and can take one
# from our handlers when two arrive back to back.
TICK_SECONDS = 0.1  # how soon serve() acts on a stop, and then on its transactions' end


def _database_failure(exc: BaseException) -> str:
    """Why the database gave no policy set: a server that answered and refused
    database_url (its role, password or database, as `check` says it) is no outage."""
    if isinstance(exc, REFUSALS):
        return f"the server refuses database_url ({database_problem(exc)})"
    return f"database unreachable ({database_problem(exc)})"


@dataclass(frozen=True)
class Worker:
    """What a worker process gets from the parent that forked it (see .supervisor)."""

    index: int
    duplicates: DuplicateDetector  # shared by all workers
    spool_budget: SpoolBudget  # spool_max_bytes, for all workers' spools together
    scrapes: socket.socket  # the parent asks for this worker's metrics here
    policies: RunningSet | None  # policy_dir's set the others run; None: the database's
    parent: int  # its pid: a stop (SIGUSR2) comes from it, or from the kernel as it died


class Notifier(Protocol):
    """Who hears how the milter is doing: systemd (SystemdNotifier), or a worker's parent."""

    def ready(self) -> None: ...
    def reloading(self) -> None: ...
    def stopping(self) -> None: ...


def audit_spool(settings: MilterSettings, worker: Worker | None) -> AuditSpool:
    """This process's spool: a worker's counts against the budget all workers share."""
    if worker is None:
        return AuditSpool(settings.spool_dir, SpoolBudget(settings.spool_max_bytes))
    return AuditSpool(settings.spool_dir, worker.spool_budget, worker.index)


class MilterProcess:
    """The milter alone, or one worker of several (``worker``)."""

    def __init__(self, settings: MilterSettings, notifier: Notifier,
                 worker: Worker | None = None) -> None:
        self.settings = settings
        self.notifier = notifier
        self.worker = worker
        index = worker.index if worker is not None else 0
        self.metrics = Metrics()
        self.loop_thread = LoopThread()
        dsn = settings.database_url.reveal() if settings.database_url else None
        self.pipeline = AuditPipeline(
            dsn, audit_spool(settings, worker), self.metrics,
            queue_size=settings.audit_queue_size, spool_full_action=settings.spool_full_action,
            journal=AuditJournal(settings.spool_dir, index),
        )
        self.reloader = PolicyReloader(
            self.metrics, spool_dir=settings.spool_dir, policy_dir=settings.policy_dir,
            database_url=dsn, poll_seconds=settings.policy_poll_seconds,
            loop_thread=self.loop_thread, instance_name=settings.instance_name,
            announce_failures=index == 0, around_request=self._announced,
        )
        self.workers = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="postwarden-eval"
        )
        self.slots = Slots(settings.max_concurrency)
        self.occasional = Occasional()  # the refusals' lines (Services.occasional)
        self.transactions = OpenTransactions()
        self._stop_metrics: Callable[[], None] | None = None
        self._signals = PendingSignals()
        self._stopping = threading.Event()
        self._socket_open = threading.Event()  # set on libmilter's thread
        self._socket_file: tuple[int, int] | None = None  # the unix socket's file we made
        # Start-up's READY=1, then a reload's RELOADING=1 (before, the READY=1 ending
        # the reload would tell systemd that the milter serves).
        self._ready_said = False
        self._ready_lock = threading.Lock()
        self._milter_error: BaseException | None = None
        self._socket_lost = False  # our unix socket's file was removed or replaced

    def start(self) -> Services:
        """Everything but the socket; raises StartupError for what the admin must fix."""
        if self.worker is None:  # workers: the parent did
            refuse_served_socket(self.settings.milter_socket)
            if self.settings.database_url is not None:
                check_schema(self.settings.database_url.reveal(),
                             alone=lambda: no_policy_source(self.settings))
        with signals_blocked():
            self.loop_thread.start()
            try:
                holder = self.reloader.load_initial(
                    self.worker.policies if self.worker is not None else None)
            except PoliciesError as exc:
                raise policies_refused(exc) from None
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                raise NotYet(f"no policy set: {_database_failure(exc)} and no usable "
                             "last good set in spool_dir") from None
            self.pipeline.start(self.loop_thread)
            self.reloader.start()
            self._start_metrics()
        duplicates = (self.worker.duplicates if self.worker is not None
                      else DuplicateDetector(self.settings.duplicate_window_seconds,
                                             shared=False))
        return Services(
            settings=self.settings, policies=holder, audit=self.pipeline, metrics=self.metrics,
            duplicates=duplicates, slots=self.slots, transactions=self.transactions,
            workers=self.workers, occasional=self.occasional,
        )

    def _start_metrics(self) -> None:
        """Our endpoint, or (a worker) answers to the parent's, which merges them."""
        if self.worker is not None:
            self._stop_metrics = answer_scrapes(self.metrics.registry, self.worker.scrapes)
            return
        self._stop_metrics = serve_metrics(self.settings, self.metrics.serve)

    def serve(self, services: Services) -> None:
        """Run libmilter until SIGTERM/SIGINT, reloading policies on SIGHUP."""
        self.act_on_signals()  # those of the start (held ones too: .signals)
        if self._stopping.is_set():
            return
        with signals_blocked():
            thread = threading.Thread(target=self._run_milter, args=(services,),
                                      name="postwarden-libmilter", daemon=True)
            thread.start()
        stop_by: float | None = None  # once stopping: how long open transactions may run
        settling = Settling(services.transactions, services.callbacks)
        while thread.is_alive():
            thread.join(timeout=TICK_SECONDS)
            self.act_on_signals()
            self._ready_once_open()
            self._watch_socket_file()
            if self._stopping.is_set():
                if stop_by is None:
                    self.notifier.stopping()
                    stop_by = time.monotonic() + self.settings.message_timeout_seconds
                # Settled: the last transaction's reply was handed to libmilter a tick
                # ago at least (session.Settling); at the deadline, what is open is cut.
                if settling.settled() or time.monotonic() >= stop_by:
                    # Not joined: libmilter's listener sees its stop only when its poll
                    # times out (every 5 s, MI_CHK_TIME), with nothing left to do.
                    self._stop_libmilter(services)
                    if self._socket_lost:  # exit 1: the service manager restarts us
                        raise MilterError(f"the socket file of {self.settings.milter_socket} "
                                          "was removed or replaced")
                    return
        if self._milter_error is not None and not self._socket_open.is_set():
            raise socket_refused(self.settings.milter_socket)  # exit 2 or 1 (NotYet)
        if self._milter_error is not None:  # once serving (out of threads, say): exit 1
            raise MilterError(f"libmilter stopped serving: {self._milter_error}")
        # libmilter's own signal thread took a signal meant for us: exit non-zero so the
        # service manager restarts the milter.
        raise MilterError("libmilter stopped without a stop request")

    def _run_milter(self, services: Services) -> None:
        try:
            if self.worker is not None:
                self._opened()  # the parent opened it
                libmilter.serve_opened(services)
            else:
                libmilter.run(services, self.settings.milter_socket, self._opened,
                              self.settings.milter_socket_mode)
        except Exception as exc:  # noqa: BLE001 - reported by serve() on the main thread
            self._milter_error = exc
            if self._socket_open.is_set():  # else serve() tells why, as it exits
                log.error("libmilter stopped: %s", exc)

    def _opened(self) -> None:
        """The socket accepts connections (on libmilter's thread): note the unix socket's
        file we made, and say we start only now, as the supervisor does (a socket that
        cannot be opened was said to be started on)."""
        if self.worker is None:
            self._socket_file = socket_file(self.settings.milter_socket)
        self._socket_open.set()
        log.info("postwarden milter %s starting on %s", self.settings.instance_name,
                 self.settings.milter_socket)

    def _ready_once_open(self) -> None:
        """READY=1, once, when the socket accepts connections (on the main thread)."""
        if self._socket_open.is_set() and not (self._ready_said or self._stopping.is_set()):
            with self._ready_lock:
                self.notifier.ready()
                self._ready_said = True

    @contextmanager
    def _announced(self, reason: str) -> Iterator[None]:
        """Around a requested reload (on the reload thread): RELOADING=1, then READY=1
        once the set is loaded or refused, for one asked for by signal after start-up's
        READY=1."""
        with self._ready_lock:
            announce = reason == "signal" and self._ready_said
            if announce:
                self.notifier.reloading()
        try:
            yield
        finally:
            if announce:
                self.notifier.ready()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Only queue ``signum`` for serve() (:meth:`act_on_signals`; .signals)."""
        self._signals.put(signum)

    def act_on_signals(self) -> None:
        """Do what the signals queued since the last call ask (on the main thread): one
        reload request for any number of reload signals, a stop once."""
        reloads, stop = self._signals.take()
        if stop is not None:
            self._begin_stop(f"{stop}: stopping{self._orphaned()}")
        if reloads and not self._stopping.is_set():
            log.info("%s: reloading policies", "/".join(reloads))
            self.reloader.request()

    def _begin_stop(self, why: str) -> None:
        """Refuse new transactions from now on; serve() stops libmilter, once."""
        if self._stopping.is_set():
            return
        self.transactions.close()
        self._stopping.set()
        # Only now: from this line on, a new transaction is refused (the write
        # gives up the GIL, and a MAIL FROM could be admitted meanwhile).
        log.info("%s", why)

    def _watch_socket_file(self) -> None:
        """Stop, to exit 1, once our unix socket's file is gone: libmilter would go on
        serving nobody (a worker's parent watches the file for all of them)."""
        if self.worker is None and not self._stopping.is_set() and socket_file_lost(
                self.settings.milter_socket, self._socket_file):
            self._socket_lost = True
            self._begin_stop("socket file gone: stopping")

    def _orphaned(self) -> str:
        """What a worker's stop line adds when its parent died (an OOM kill, a crash):
        otherwise nothing in its log says why it stops."""
        if self.worker is not None and os.getppid() != self.worker.parent:
            return " (the parent process is gone)"
        return ""

    def _stop_libmilter(self, services: Services) -> None:
        """Stop accepting and serving. Only once open transactions have ended (or at the
        stop's deadline): libmilter (Debian's, built with its pool of workers) serves no
        connection after a stop, not even one in the middle of a message. It leaves the
        connections open, unanswered: hang them up, so that Postfix applies
        milter_default_action to each next command at once rather than wait for it
        (milter_command_timeout) or for this process to exit. A transaction still open
        (the deadline passed) is audited as aborted first, flagged stop_deadline: no
        abort callback comes for it, and the audit queue drains after this."""
        connection = self.settings.milter_socket
        if self.worker is not None:  # the socket stays, for the parent and the others
            disown_listener(connection)
        with signals_blocked():  # its thread's
            libmilter.stop()
        cut = services.transactions.cut()
        if cut:
            log.warning("stop deadline (message_timeout_seconds, %.0f s) passed: "
                        "%d open transactions cut, audited as aborted",
                        self.settings.message_timeout_seconds, cut)
        idle = hang_up(connection) - cut
        if idle > 0:
            log.info("closed %d idle connections", idle)
        if self.worker is None:  # as libmilter's listener would, once it saw the stop
            remove_socket_file(connection, self._socket_file)

    def shutdown(self) -> None:
        """Drain and stop everything we started."""
        self.reloader.stop()
        self.workers.shutdown(wait=False, cancel_futures=True)
        self.pipeline.stop()
        log_unsaid(self.occasional, log)
        if self._stop_metrics is not None:
            self._stop_metrics()
        self.loop_thread.stop()
        log.info("postwarden milter stopped")


def run_process(process: MilterProcess) -> int:
    """Start, serve until a stop signal, shut down; the exit code (errors on stderr)."""
    with signals_handled(process.on_signal):
        try:
            services = process.start()
            process.serve(services)
        except StartupError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return exc.exit_status
        except MilterError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        finally:
            process.shutdown()
    return 0
