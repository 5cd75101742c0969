"""Background maintenance jobs of the admin service (retention, pruning, housekeeping).

A job is a coroutine function taking one pooled connection. :func:`periodic`
runs it at start and then every ``interval`` seconds while the service runs;
a database outage skips a round with a warning instead of ending the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

DB_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
Job = Callable[[asyncpg.Connection], Awaitable[Any]]


async def _repeat(name: str, pool: asyncpg.Pool, job: Job, interval: float) -> None:
    while True:
        try:
            async with pool.acquire() as conn:
                await job(conn)
        except DB_ERRORS as exc:
            log.warning("%s: database unavailable (%s), next try in %.0f s",
                        name, type(exc).__name__, interval)
        await asyncio.sleep(interval)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel a background task and wait for it, whatever it was doing.

    Cancelled in the middle of a query, asyncpg may end the task with a client
    error rather than CancelledError; at shutdown that is logged, not raised.
    """
    task.cancel()
    outcomes = await asyncio.gather(task, return_exceptions=True)
    outcome = outcomes[0]
    if isinstance(outcome, Exception):
        log.warning("%s stopped with %s", task.get_name(), type(outcome).__name__)


@contextlib.asynccontextmanager
async def periodic(name: str, pool: asyncpg.Pool, job: Job, interval: float,
                   ) -> AsyncIterator[None]:
    """Run ``job`` every ``interval`` seconds inside the ``async with`` block."""
    task = asyncio.create_task(_repeat(name, pool, job, interval), name=f"postwarden-{name}")
    try:
        yield
    finally:
        await stop_task(task)
