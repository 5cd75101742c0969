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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from .errors import DatabaseSilent
from .pool import CONNECT_TIMEOUT, connect

T = TypeVar("T")

PROBE_EVERY_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = CONNECT_TIMEOUT


async def while_answering(waiting: Awaitable[T], answers: Callable[[], Awaitable[None]],
                          ending: Callable[[], None] = lambda: None) -> T:
    """``waiting``'s outcome, or what ``answers`` raises (a probe of the server on another
    connection that got no answer) once a probe, made every :data:`PROBE_EVERY_SECONDS`
    while ``waiting`` runs, raises before it ends: a statement that may rightly wait long
    (a lock, a migration) is told from a silent server. ``waiting``'s own outcome wins a
    probe under way when it ends. ``ending``, called then before ``waiting`` is
    cancelled, may end its connection at once (a cancel waits for the server)."""
    task = asyncio.ensure_future(waiting)
    try:
        while not (await asyncio.wait({task}, timeout=PROBE_EVERY_SECONDS))[0]:
            probe = asyncio.ensure_future(answers())
            try:
                await asyncio.wait({task, probe}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _cancelled(probe)
            if not task.done() and probe.exception() is not None:
                ending()
                probe.result()
        return task.result()
    finally:  # a probe failed, or the wait was cancelled
        await _cancelled(task)


class Watch:
    """The step migrate waits for (:meth:`step`), and the server's answers meanwhile."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.waiting_for = "its connection"
        self.conn: asyncpg.Connection | None = None  # migrate's, once made
        self._probe: asyncpg.Connection | None = None

    def step(self, what: str) -> None:
        self.waiting_for = what

    async def watching(self, work: Awaitable[T]) -> T:
        """``work``'s outcome; DatabaseSilent once a probe gets no answer."""
        try:
            return await while_answering(work, self._answers, lambda: self._end(self.conn))
        finally:
            self._end(self._probe)

    async def _answers(self) -> None:
        """DatabaseSilent when a probe got no answer in time; a probe refused (no
        connection slot left, say) tells nothing, and is made again at the next one."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                if self._probe is None:
                    self._probe = await connect(self._dsn, connect_timeout=PROBE_TIMEOUT_SECONDS)
                await self._probe.execute("SELECT 1")
        except TimeoutError:
            raise DatabaseSilent(
                f"the database gave no answer within {PROBE_TIMEOUT_SECONDS:g} s "
                f"while migrate waited for {self.waiting_for}; the migrations "
                "applied so far stay, none is applied in part: run migrate again "
                "once it answers") from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._end(self._probe)
            self._probe = None

    @staticmethod
    def _end(conn: asyncpg.Connection | None) -> None:
        """End ``conn`` at once: a close waits for the server's answer."""
        if conn is not None:
            conn.terminate()


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """``task`` ended: cancelled unless done; its outcome is another's to tell (taken
    here all the same: one left untold is not logged as never retrieved). A cancellation
    of the caller goes on, ``task``'s own is suppressed: taken for ``task``'s, one that
    came while the caller waited for it to end was lost, the caller went on as if never
    cancelled (asyncio hands the caller's on to the task it waits for)."""
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if (current := asyncio.current_task()) is not None and current.cancelling():
            raise
    except Exception:  # noqa: BLE001, S110 - its outcome is another's to tell
        pass
