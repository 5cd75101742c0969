"""Log lines that name the message: queue id and our uid ride in a ContextVar.

libmilter runs each SMTP connection on its own thread, and each thread has
its own context, so a callback sets :data:`MESSAGE` once and every log line
written further down (apply, audit, duplicates) carries the ids without
passing them around. The handler's RedactingFormatter redacts and truncates
each line once: one place scrubs secrets from everything this process writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from postwarden_policies.redact import log_to_stderr

MAX_LOG_MESSAGE = 2000


@dataclass(frozen=True, slots=True)
class MessageContext:
    queue_id: str = "-"
    uid: str = "-"


NO_MESSAGE = MessageContext()
MESSAGE: ContextVar[MessageContext | None] = ContextVar("postwarden_message", default=None)


def set_message_context(queue_id: str | None, uid: str | None) -> None:
    queue_id, uid = queue_id or "-", uid or "-"
    current = MESSAGE.get()
    # Every callback calls this, and the ids seldom change within a connection.
    if current is None or current.queue_id != queue_id or current.uid != uid:
        MESSAGE.set(MessageContext(queue_id, uid))


@contextmanager
def message_context(queue_id: str | None, uid: str | None) -> Iterator[None]:
    """Within it, lines name this message: for a line about it written away from its
    callbacks (the audit writer's), whose own context is restored after."""
    token = MESSAGE.set(MessageContext(queue_id or "-", uid or "-"))
    try:
        yield
    finally:
        MESSAGE.reset(token)


class MessageContextFilter(logging.Filter):
    """Add ``queue_id``/``uid`` to every record (the formatter redacts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = MESSAGE.get() or NO_MESSAGE
        record.queue_id = context.queue_id
        record.uid = context.uid
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(queue_id)s %(uid)s] %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr through the context filter."""
    log_to_stderr(LOG_FORMAT, level, MAX_LOG_MESSAGE, [MessageContextFilter()])
