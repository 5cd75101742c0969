"""Exceptions of postwarden_admin_api; the error middleware maps them to JSON.

    ApiError                 an HTTP error with a stable code (status, code, message, details)
    └── ValidationFailed     422 validation_failed, every bad field listed in details
    ClientGone               the client left before its answer: no one to answer

Handlers raise these; nothing else reaches a client. Unexpected exceptions
become 500 ``internal_error`` with no exception text.

Requests take their pooled connection with :func:`connection` (or :func:`acquire`, to
keep it across several steps): when the pool stays full for ``ACQUIRE_TIMEOUT``
seconds the answer is 503 ``database_busy``, not a request that waits for ever
behind whoever holds the connections; with PostgreSQL away (no connection can be made,
or none answers within that time, the server refusing one, or one is lost mid-request:
``DATABASE_AWAY``, or a statement gets no answer within ``COMMAND_TIMEOUT``) it is 503
``database_unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from postwarden_store import database_problem, ending_unanswered

log = logging.getLogger(__name__)

ACQUIRE_TIMEOUT = 5.0  # seconds a request waits for a pooled connection
# Seconds a statement on a pooled connection waits for its answer (the pool's
# command_timeout): past it the server, or the network to it, is taken for silent
# (TimeoutError, 503 database_unavailable to a request), where a request waited for ever.
# Past the longest a statement is meant to run: the audit reads' 30 s statement_timeout.
COMMAND_TIMEOUT = 40.0


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(ApiError):
    def __init__(self, details: list[dict[str, Any]], message: str = "request is invalid") -> None:
        super().__init__(422, "validation_failed", message, details)


class ClientGone(ConnectionError):
    """The client's connection closed while its request was worked on (its query was
    cancelled: :func:`~.httpserver.ended_if_client_leaves`)."""


def database_busy() -> ApiError:
    return ApiError(503, "database_busy", "every database connection is in use, retry later",
                    headers={"Retry-After": "1"})


# PostgreSQL away: a connection lost mid-query, a server shutting down or starting.
# InternalClientError is what a pooled connection can raise on its next query once the
# server ended it and refuses a new one ("cannot switch to state ...; another operation
# is in progress"). ReadOnlySQLTransactionError: a server refusing writes (a standby
# after a failover, default_transaction_read_only), the key check of every request's
# among them: nothing was written, and a retry once the primary is back succeeds.
DATABASE_AWAY = (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                 asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
                 asyncpg.InternalClientError, asyncpg.ReadOnlySQLTransactionError)


def database_unavailable() -> ApiError:
    return ApiError(503, "database_unavailable", "the database cannot be reached, retry later",
                    headers={"Retry-After": "5"})


def pool_full(pool: asyncpg.Pool) -> bool:
    """Whether the pool holds as many open connections as it may: a wait for one that
    timed out then lacked a free one. Below its size it would have opened one, and that
    connect got no answer (the server or the network silent): the database is away."""
    return bool(pool.get_size() >= pool.get_max_size())


async def acquire(pool: asyncpg.Pool) -> asyncpg.Connection:
    """A pooled connection for a request (to ``pool.release``); :func:`database_busy`
    once none frees up, :func:`database_unavailable` when none can be made."""
    try:
        return await pool.acquire(timeout=ACQUIRE_TIMEOUT)
    except TimeoutError:
        if pool_full(pool):
            raise database_busy() from None
        log.warning("database unreachable: a new connection got no answer within %g s",
                    ACQUIRE_TIMEOUT)
        raise database_unavailable() from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Refused, reset, no route (OSError), or the server refusing a new connection:
        # no slot left (too many connections), a role or database gone, a password
        # changed. Its own words (never quoting a password) say which, not a 500.
        log.warning("database unreachable: %s", database_problem(exc))
        raise database_unavailable() from None


def lost(conn: asyncpg.Connection) -> bool:
    """Whether the pooled connection ``conn``, held since :func:`acquire`, was lost (the
    server restarting, its backend terminated) while nothing ran on it: asyncpg then
    hands its slot back to the pool, and each later call on ``conn`` raises
    InterfaceError ("released back to the pool"), which says a mistake, not an outage."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # released: none of ours releases a held one
        return True


@contextmanager
def naming_loss(conn: asyncpg.Connection) -> Iterator[None]:
    """Statements on the pooled ``conn``: one once it was lost raises the loss
    (ConnectionDoesNotExistError), as one under way when it is lost does, not
    asyncpg's InterfaceError (:func:`lost`)."""
    try:
        yield
    except asyncpg.InterfaceError as exc:
        if not lost(conn):
            raise
        raise asyncpg.ConnectionDoesNotExistError(
            "the connection was lost between statements") from exc


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """:func:`acquire`, released on leaving; a statement on it once it was lost raises
    the loss (:func:`naming_loss`: 503), and one that got no answer ends it
    (``ending_unanswered``): its release waited ``ACQUIRE_TIMEOUT`` more for the cancel."""
    conn = await acquire(pool)
    try:
        with naming_loss(conn), ending_unanswered(conn):
            yield conn
    finally:
        await pool.release(conn)


@asynccontextmanager
async def briefly(pool: asyncpg.Pool, seconds: float = 2.0) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for a step that has a fallback (the last known runtime
    settings, counting in process), taken and used within ``seconds`` (TimeoutError):
    a silent database held every request in it for ``COMMAND_TIMEOUT``, /healthz's too."""
    async with asyncio.timeout(seconds), pool.acquire(timeout=seconds) as conn:
        yield conn
