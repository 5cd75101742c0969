"""Telling webhooks that a policy set was refused (``policy.load_failed``).

The milter never makes an HTTP call: it stores the event in Postgres with
the SQL function ``webhook_raise`` (migration ``0005_webhooks.sql``) and the
admin service delivers it. The write runs on the :class:`LoopThread` (which
owns every database connection of the process), fire-and-forget, so the
thread that refused the set never waits on Postgres. The payload is
metadata only: the instance, what triggered the reload, the labels of the
sources that failed and the error lines (``file:line:col: message``), each
redacted and bounded; never policy text beyond the error messages.

Without a database nothing is raised: the refusal is logged and counted by
the reloader. A failed write (Postgres away) is logged and counted too; the
event is not retried, since the next reload attempt raises a fresh one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from typing import Any

from postwarden_policies import PoliciesError, PolicyLoadError, redact
from postwarden_store import connect

from .loopthread import LoopThread
from .metrics import Metrics

log = logging.getLogger(__name__)

EVENT_TYPE = "policy.load_failed"
# webhook_raise(event_type text, payload jsonb, targets text[]): NULL targets means
# "every enabled endpoint subscribed to the event type".
RAISE = "SELECT webhook_raise($1, $2::text::jsonb, NULL)"
DB_TIMEOUT = 10.0
MAX_ERROR_LINES = 20
MAX_LINE_CHARS = 500


def _bounded(line: str) -> str:
    line = redact(line)
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 1] + "…"


def load_failed_payload(instance: str, trigger: str, error: PoliciesError) -> dict[str, Any]:
    """The event's data: who refused what, and why (error lines only, redacted)."""
    if isinstance(error, PolicyLoadError) and error.issues:
        sources = sorted({issue.file for issue in error.issues})
        lines = [str(issue) for issue in error.issues]
    else:
        sources, lines = [], [str(error)]
    if len(lines) > MAX_ERROR_LINES:
        lines = [*lines[:MAX_ERROR_LINES], f"... and {len(lines) - MAX_ERROR_LINES} more"]
    return {
        "instance": redact(instance),
        "trigger": trigger,
        "sources": [_bounded(source) for source in sources],
        "error": "\n".join(_bounded(line) for line in lines),
    }


class LoadFailedNotifier:
    """Raises ``policy.load_failed`` in Postgres from the loop thread; never blocks the caller."""

    def __init__(
        self,
        database_url: str | None,
        instance: str,
        loop_thread: LoopThread,
        metrics: Metrics,
    ) -> None:
        self._dsn = database_url
        self._instance = instance
        self._loop_thread = loop_thread
        self._metrics = metrics

    def notify(self, trigger: str, error: PoliciesError) -> concurrent.futures.Future[None] | None:
        """Queue the event (any thread); the future is for tests, callers need not wait."""
        if self._dsn is None:
            return None
        data = json.dumps(load_failed_payload(self._instance, trigger, error))
        future = self._loop_thread.submit(self._raise(self._dsn, data))
        future.add_done_callback(self._done)
        return future

    @staticmethod
    async def _raise(dsn: str, data: str) -> None:
        conn = await connect(dsn, connect_timeout=DB_TIMEOUT)
        try:
            await asyncio.wait_for(conn.fetchval(RAISE, EVENT_TYPE, data), DB_TIMEOUT)
        finally:
            await conn.close(timeout=DB_TIMEOUT)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._metrics.errors.labels("policy_event").inc()
            log.warning("could not store the %s event (%s)", EVENT_TYPE, type(exc).__name__)
