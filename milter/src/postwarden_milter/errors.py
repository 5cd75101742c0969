"""Exceptions of postwarden_milter.

    MilterError
    ├── StartupError        the milter cannot start (settings, schema, policies, socket)
    │   └── NoPolicySource  nor can it yet: its policies' database is away
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


class NoPolicySource(StartupError):
    """Policies from a database that is away, and no last good set kept (a first start):
    exit 1, which the unit restarts until the database is back. As exit 2 the milter
    stayed down for good, and Postfix deferred all mail, when Postgres came up after it."""

    exit_status = 1


class MessageTimeout(MilterError):
    pass
