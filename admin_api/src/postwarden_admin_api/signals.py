"""The milter's reload signals, which the admin service takes too: held from the
command's first line (:mod:`.__main__`) until ``serve`` handles them.

Their default action ends the process, with an exit systemd counts as clean and does
not restart (Restart=on-failure): one sent as the service starts (its imports, its
settings, the database) took the send API down for good.
"""

from __future__ import annotations

import signal

RELOAD_SIGNALS = (signal.SIGHUP, signal.SIGUSR1)


def hold_reload_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, RELOAD_SIGNALS)


def release_reload_signals() -> None:
    """Those held arrive now: to serve's handlers, or (another command) as ever."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, RELOAD_SIGNALS)
