"""Exceptions of postwarden_milter.

    MilterError
    ├── StartupError        the milter cannot start (settings, schema, policies, socket)
    └── MessageTimeout      a message missed its processing deadline

Inside callbacks every exception becomes the configured fail action in one
place (``handler.ConnectionHandler.fail``); none reaches the SMTP client.
"""


class MilterError(Exception):
    """Base of every error raised by postwarden_milter."""


class StartupError(MilterError):
    """Printed as one line before exiting with status 2."""


class MessageTimeout(MilterError):
    pass
