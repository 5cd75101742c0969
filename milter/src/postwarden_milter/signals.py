"""Our signals: blocked for the threads we start, handled by queueing them.

A Python signal handler runs between two steps of the main thread, inside another
handler too when signals come back to back: one that took a lock (``Event.set``'s) or
logged could wait for itself for ever, and a SIGTERM after it would go unheard. So a
handler only queues the signal (``SimpleQueue.put`` is reentrant), and the main thread
takes the queue at its next tick: any number of reload signals are one reload.
"""

from __future__ import annotations

import queue
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}
RELOAD_SIGNALS = {signal.SIGHUP, signal.SIGUSR1}


class PendingSignals:
    """Signals a handler queued (:meth:`put` is the handler), for the main thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()

    def put(self, signum: int, _frame: FrameType | None = None) -> None:
        self._queue.put(signum)

    def take(self) -> tuple[list[str], str | None]:
        """The names of the reload signals queued since the last call, and of the first
        stop signal among them (None: no stop). The only reader: ``qsize()`` items are
        there to take; a storm still coming waits for the next call."""
        reloads: set[str] = set()
        stop = None
        for _ in range(self._queue.qsize()):
            signum = signal.Signals(self._queue.get_nowait())
            if signum in RELOAD_SIGNALS:
                reloads.add(signum.name)
            elif stop is None:
                stop = signum.name
        return sorted(reloads), stop


def hold_signals() -> None:
    """Block our signals from a serving command's first line: a SIGHUP sent while it
    imports and reads its settings (a fraction of a second) took the default action,
    and killed it. Held, they wait for :func:`signals_handled`."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def release_signals() -> None:
    """Unblock our signals: those held since :func:`hold_signals` arrive now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@contextmanager
def signals_blocked() -> Iterator[None]:
    """Threads started inside inherit a mask without our signals."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def signals_handled(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Our signals go to ``handler`` inside (installed first thing: they only queue a
    request, where the default action would kill a milter still starting), those held
    since the start (:func:`hold_signals`, a worker's fork) too."""
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # first: no default action between
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)
