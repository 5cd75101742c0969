"""migrate's watch on a database that may stop answering.

migrate's statements have no timeout: a migration may rightly run for minutes (an
index built over the audit table), and the advisory lock is waited for as long as
another migrate runs. A server that stops answering once connected (frozen, or a
network dropping its packets) was told apart by nothing: migrate waited for ever,
saying nothing. While a step runs longer than :data:`PROBE_EVERY_SECONDS`, a
``SELECT 1`` on another connection asks whether the server still answers; once one
gets no answer within :data:`PROBE_TIMEOUT_SECONDS`, migrate's connection is ended
(without asyncpg's cancel, which a silent server never acknowledges) and
:class:`DatabaseSilent` names the step it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from .errors import DatabaseSilent
from .pool import CONNECT_TIMEOUT, connect

T = TypeVar("T")

PROBE_EVERY_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = CONNECT_TIMEOUT


class Watch:
    """The step migrate waits for (:meth:`step`), and the server's answers meanwhile."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.waiting_for = "its connection"
        self.conn: asyncpg.Connection | None = None  # migrate's, once made
        self._probe: asyncpg.Connection | None = None

    def step(self, what: str) -> None:
        self.waiting_for = what

    async def watching(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work``'s outcome; DatabaseSilent once a probe gets no answer."""
        task = asyncio.ensure_future(work())
        try:
            while not (await asyncio.wait({task}, timeout=PROBE_EVERY_SECONDS))[0]:
                if await self._silent(task):
                    self._end(self.conn)
                    raise DatabaseSilent(
                        f"the database gave no answer within {PROBE_TIMEOUT_SECONDS:g} s "
                        f"while migrate waited for {self.waiting_for}; the migrations "
                        "applied so far stay, none is applied in part: run migrate again "
                        "once it answers")
            return task.result()
        finally:
            await _cancelled(task)
            self._end(self._probe)

    async def _silent(self, task: asyncio.Future[Any]) -> bool:
        """Whether a probe finds the server silent before ``task`` ends: a step's own
        bound (the connect's) says what it waited for as well."""
        probe = asyncio.ensure_future(self._answers())
        try:
            await asyncio.wait({task, probe}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancelled(probe)
        return not task.done() and not probe.result()

    async def _answers(self) -> bool:
        """False when a probe got no answer in time; a probe refused (no connection slot
        left, say) tells nothing, and is made again at the next one."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                if self._probe is None:
                    self._probe = await connect(self._dsn, connect_timeout=PROBE_TIMEOUT_SECONDS)
                await self._probe.execute("SELECT 1")
        except TimeoutError:
            return False
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._end(self._probe)
            self._probe = None
        return True

    @staticmethod
    def _end(conn: asyncpg.Connection | None) -> None:
        """End ``conn`` at once: a close waits for the server's answer."""
        if conn is not None:
            conn.terminate()


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """``task`` ended: cancelled unless done; its outcome is another's to tell."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
