"""Exceptions of postwarden_milter.

    MilterError
    ├── StartupError        the milter cannot start (settings, schema, policies, socket)
    │   └── NotYet          nor can it yet: the database it needs is away or not migrated,
    │                       or a port it listens on is held by another process
    └── MessageTimeout      a message missed its processing deadline

Inside callbacks every exception becomes the configured fail action in one
place (``handler.ConnectionHandler.fail``); none reaches the SMTP client.
"""


class MilterError(Exception):
    """Base of every error raised by postwarden_milter."""


class StartupError(MilterError):
    """Printed as one line before exiting with :attr:`exit_status`: 2, what the admin
    must fix, which the systemd unit does not restart (RestartPreventExitStatus=2)."""

    exit_status = 2


class NotYet(StartupError):
    """What a start needs from the database is not there yet, and comes without a change
    here: policies from a database that is away with no last good set kept (a first
    start), or migrations pending (migrate runs from another host); or the metrics port
    or a TCP milter_socket in use (by a process that may let it go, as the admin
    service's ``listen``), its address not on the host yet or its host name not
    resolved for want of an answer (at boot); or a worker process the system cannot
    start now (no memory or process left). Exit 1, which the unit restarts until it is
    there; as exit 2 the milter stayed down for good, Postfix deferring all mail, once
    Postgres came up, the migrations ran or the port was free."""

    exit_status = 1


class MessageTimeout(MilterError):
    pass
