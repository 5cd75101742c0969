"""Telling systemd how a service is doing: the sd_notify protocol, without libsystemd.

A ``Type=notify`` unit counts as started only once its process says
``READY=1``: units ordered after it (Postfix after the milter) then start
with its socket open, and ``systemctl reload`` or ``stop`` wait until its
signal handlers are in place. systemd names a datagram socket in
``NOTIFY_SOCKET``, a path or ``@name`` (an abstract socket); each message is
one datagram of ``KEY=value`` lines. Without the variable (not started by
systemd) nothing is sent. A failed send is logged once and never stops the
service: without ``READY=1`` systemd gives up the start itself
(``TimeoutStartSec``).

:meth:`SystemdNotifier.from_environment` takes the variable out of the
environment (sd_notify's ``unset_environment``): a process forked or started
later, such as a milter worker, cannot speak for the service
(``NotifyAccess=main`` would drop what it says anyway).

Not sent: ``MAINPID=`` (systemd started this very process, and with
``NotifyAccess=main`` no other may name a new one), nor ``MONOTONIC_USEC=``
(read with ``RELOADING=1`` by ``Type=notify-reload`` from systemd 253 on;
Debian 12's systemd 252 knows neither).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"


class SystemdNotifier:
    """Says READY, RELOADING and STOPPING to the service manager at ``address``
    (None: nobody listens, nothing is sent)."""

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._warned = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ
                         ) -> SystemdNotifier:
        return cls(environ.pop(NOTIFY_SOCKET, None) or None)

    def ready(self) -> None:
        """Serving (after start-up, or after a reload announced by :meth:`reloading`)."""
        self._send("READY=1")

    def reloading(self) -> None:
        self._send("RELOADING=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        # '@' stands for the leading NUL of an abstract socket's name.
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), os.fsencode(target))
        except OSError as exc:
            if not self._warned:  # the same cause would fill the log at every reload
                self._warned = True
                log.warning("cannot notify the service manager on %s (%s); "
                            "further failures are not logged", self._address,
                            exc.strerror or type(exc).__name__)
