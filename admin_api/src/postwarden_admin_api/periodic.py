"""Background loops of the admin service: maintenance jobs, and what keeps every loop alive.

A job is a coroutine function taking one pooled connection. :func:`periodic`
runs it at start and then every ``interval`` seconds while the service runs; a
job that could not do its work this round (a lock held elsewhere) raises
:class:`Postponed` and runs again after its ``retry`` seconds instead.
Each round of every background loop (these jobs, the relay workers, the
maillog follower) runs inside :func:`surviving`: no error ends a loop, since a
dead relay or follower would stop mail or tracking silently until a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg

from postwarden_store import ending_unanswered

from .errors import naming_loss
from .metrics import JOB_OUTCOMES, Metrics
from .outages import OUTAGES

log = logging.getLogger(__name__)

# What an unreachable, restarting or overloaded Postgres raises. asyncpg's
# InternalClientError is what a connection the server terminated can raise on
# its next query ("cannot switch to state ...; another operation is in progress").
DB_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
             asyncpg.InternalClientError)
# What a loop's round may lack (the maillog follower's is a file).
OUTAGE = "database or file"
Job = Callable[[asyncpg.Connection], Awaitable[Any]]


@contextlib.asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """``pool.acquire()`` for a background loop or a start-up step: a connection lost
    between two of its statements (PostgreSQL restarting, its backend terminated) is told
    as lost (naming_loss), not by asyncpg's "connection has been released back to the
    pool", which reads as a bug of ours; one whose statement got no answer is ended
    (ending_unanswered): its release, which no acquire timeout bounds, waited
    COMMAND_TIMEOUT more for a frozen database to acknowledge the cancel."""
    async with pool.acquire() as conn:
        with naming_loss(conn), ending_unanswered(conn):
            yield conn


class Postponed(Exception):
    """A job's round could not run now; its text says why (logged as a warning)."""


@contextlib.contextmanager
def surviving(name: str, *, traceback: bool = True) -> Iterator[None]:
    """One round of a background loop: an error is logged, and the loop goes on.

    An outage (the database, or a file such as the maillog) is expected and
    gets a warning as it starts, a reminder at most once a minute and a line as it
    ends (.outages), whichever of the loops named ``name`` meets it; anything else
    is a bug and is logged with its traceback, or by type only where an
    exception's text may quote a secret (webhook URLs). Cancellation is not an
    error and passes through.
    """
    try:
        yield
    except DB_ERRORS as exc:
        OUTAGES.failed(name, exc, OUTAGE)
    except Exception as exc:
        log.error("%s: unexpected error (%s), trying again", name, type(exc).__name__,
                  exc_info=traceback)
    else:
        OUTAGES.back(name, OUTAGE)


async def _repeat(name: str, pool: asyncpg.Pool, job: Job, *, interval: float,
                  retry: float, metrics: Metrics) -> None:
    # From the start: a job that never finishes a round must age like one that stopped.
    metrics.job_last_done.labels(name).set_to_current_time()
    for outcome in JOB_OUTCOMES:  # at 0, so that increase() sees the first failed round
        metrics.job_rounds.labels(name, outcome)
    while True:
        delay, outcome = interval, "failed"
        with surviving(name):
            try:
                async with pooled(pool) as conn:
                    await job(conn)
                outcome = "done"
            except Postponed as exc:
                delay, outcome = retry, "postponed"
                log.warning("%s: %s; trying again in %s s", name, exc, delay)
        metrics.job_rounds.labels(name, outcome).inc()
        if outcome == "done":
            metrics.job_last_done.labels(name).set_to_current_time()
        await asyncio.sleep(delay)


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
async def periodic(name: str, pool: asyncpg.Pool, job: Job, interval: float, *,
                   metrics: Metrics, retry: float | None = None) -> AsyncIterator[None]:
    """Run ``job`` every ``interval`` seconds inside the ``async with`` block; a round
    the job postponed is tried again after ``retry`` seconds (at most ``interval``).
    Each round is counted by outcome, so that a job that stopped getting done shows."""
    retry = interval if retry is None else min(retry, interval)
    task = asyncio.create_task(_repeat(name, pool, job, interval=interval, retry=retry,
                                       metrics=metrics),
                               name=f"postwarden-{name}")
    try:
        yield
    finally:
        await stop_task(task)
