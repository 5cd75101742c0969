"""The asyncpg pool, with JSON codecs so jsonb columns take and give Python values.

Every connection runs with TimeZone UTC, whatever the server's or database's
default: PostgreSQL does timestamptz arithmetic (``+ interval '1 month'``,
``date_trunc``) and renders timestamps as text or JSON in the session's zone,
and nothing of ours wants local time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
from asyncpg.transaction import Transaction

from .errors import DatabaseUnreachable, DatabaseUrlRefused

SERVER_SETTINGS = {"timezone": "UTC"}
CONNECT_TIMEOUT = 10.0
# How each pool's connections are made, for :func:`detached` (asyncpg keeps it private),
# by id(): a pool takes no weak reference. A pool's id is another's only once it is gone,
# and each pool made sets its own.
_MADE_WITH: dict[int, tuple[str, dict[str, Any]]] = {}


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: nothing beyond asyncpg's own rollback of an open transaction.

    asyncpg's default reset (``UNLISTEN *``, ``RESET ALL``, ``CLOSE ALL``,
    advisory unlock) costs a round trip on every release, and our pooled
    connections never keep session state: listeners and session-level advisory
    locks live on dedicated connections, settings are never SET, and cursors
    only exist inside transactions.
    """


def _from_password_file(exc: UnicodeDecodeError) -> bool:
    # asyncpg internals: tests/store/test_password_file.py fails if the reader is renamed.
    return any(frame.f_code.co_name == "_read_password_file"
               for frame, _ in traceback.walk_tb(exc.__traceback__))


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg's connect, a password file it cannot decode told as a client
    configuration error: it raised a UnicodeDecodeError, a traceback from every command,
    whose ``object`` (shown by its repr) is the file's text, every password in it."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(*args, **kwargs)
    except UnicodeDecodeError as exc:
        if not _from_password_file(exc):
            raise
        raise asyncpg.ClientConfigurationError(
            f"the password file (passfile=, $PGPASSFILE or ~/.pgpass) is not "
            f"{exc.encoding} text") from None
    return conn


class _PoolTransaction(Transaction):  # type: ignore[misc]
    """asyncpg's transaction, but for how it ends when the database went away.

    A statement that got no answer in time (TimeoutError): the connection is terminated,
    which the pool then discards, instead of asyncpg's ROLLBACK, which first waits for
    its cancel of the statement that a silent server never acknowledges, for a whole
    command_timeout more (a frozen database's 503 came after 80 s, past the 60 s a
    reverse proxy waits). The server rolls back when it sees the connection closed.

    A connection lost (a server restarting, a backend terminated): asyncpg's exit raised
    InterfaceError ("the underlying connection is closed") in place of the loss, which
    tells an outage from a mistake (a 500 internal_error, where 503 was due); now the
    loss, or the exception that ended the transaction."""

    __slots__ = ()

    async def __aexit__(self, extype: type[BaseException] | None, ex: BaseException | None,
                        tb: Any) -> None:
        closed = self._connection.is_closed()  # a savepoint's exit may have terminated it
        if extype is not None and issubclass(extype, TimeoutError):
            if not closed:
                self._connection.terminate()
            return
        if closed:
            if ex is None or isinstance(ex, asyncpg.InterfaceError):  # a commit, or a
                # statement on the lost connection ("released back to the pool")
                raise asyncpg.ConnectionDoesNotExistError(
                    "the connection was lost in a transaction, rolled back") from ex
            return
        await super().__aexit__(extype, ex, tb)


@contextlib.contextmanager
def ending_unanswered(conn: asyncpg.Connection) -> Iterator[None]:
    """Statements on the pooled ``conn`` outside a transaction: one that got no answer in
    time (TimeoutError) terminates the connection, which the pool then discards, as
    :class:`_PoolTransaction` does in one. Its release waited for asyncpg's cancel of the
    statement, which a silent server never acknowledges, for the acquire's timeout or,
    without one, a whole command_timeout more."""
    try:
        yield
    except TimeoutError:
        with contextlib.suppress(asyncpg.InterfaceError):  # released already: it was lost
            conn.terminate()
        raise


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    def transaction(self, *, isolation: str | None = None, readonly: bool = False,
                    deferrable: bool = False) -> Transaction:
        return _PoolTransaction(self, isolation, readonly, deferrable)


class _ReasonNotTraceback(logging.Filter):
    """asyncpg's pool says it failed to restore its connection floor with the failed
    connect's whole traceback: about 40 lines at each retry (1 s, 2 s, ... then every
    minute) while PostgreSQL is away. The reason in the line instead (database_problem:
    never a password)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            record.msg, record.args = f"{record.getMessage()} ({database_problem(exc)})", ()
            record.exc_info = record.exc_text = None
        return True


_REASON_NOT_TRACEBACK = _ReasonNotTraceback()


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, connect_timeout: float = CONNECT_TIMEOUT,
    command_timeout: float | None = None,
) -> asyncpg.Pool:
    """``command_timeout``: seconds a statement without a ``timeout=`` of its own waits for
    its answer (TimeoutError) before asyncpg cancels it; None, for ever. A server that
    stops answering on an open connection (frozen, or a network dropping its packets)
    is told apart from a slow one by nothing else: its statement_timeout is not kept
    either, and TCP waits many minutes before giving the connection up."""
    logging.getLogger("asyncpg.pool").addFilter(_REASON_NOT_TRACEBACK)  # once: a set
    options: dict[str, Any] = {
        "timeout": connect_timeout, "command_timeout": command_timeout,
        "server_settings": SERVER_SETTINGS, "connection_class": _Connection,
    }
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection,
        reset=_keep_session, connect=_connect, **options,
    )
    _MADE_WITH[id(pool)] = (dsn, options)
    return pool


async def detached(pool: asyncpg.Pool) -> asyncpg.Connection:
    """A new connection made as ``pool`` (one of :func:`create_pool`'s) makes its own, that
    the pool neither holds nor recycles: for session state (an advisory lock) that must
    last as long as it does."""
    dsn, options = _MADE_WITH[id(pool)]
    conn = await _connect(dsn, **options)
    await _init_connection(conn)
    return conn


async def connect(dsn: str, *, connect_timeout: float = CONNECT_TIMEOUT) -> asyncpg.Connection:
    conn = await _connect(dsn, timeout=connect_timeout, server_settings=SERVER_SETTINGS)
    await _init_connection(conn)
    return conn


def unreachable(exc: OSError) -> DatabaseUnreachable:
    """A command's failed connection in one line naming the setting: the bare
    OSError named no database, and a server that never answered (a wrong port, a
    firewall that drops) raised a TimeoutError with no text at all."""
    reason = str(exc).split("\n", 1)[0]
    if not reason and isinstance(exc, TimeoutError):
        reason = f"no answer within {CONNECT_TIMEOUT:g} s"
    elif isinstance(exc, FileNotFoundError) and exc.filename is None:
        # asyncpg names no file: one of the TLS files the URL or PGSSL* names.
        reason = ("a certificate or key file it names is missing (sslrootcert, sslcert or "
                  "sslkey, or PGSSLROOTCERT, PGSSLCERT, PGSSLKEY)")
    return DatabaseUnreachable(f"database_url: cannot reach the database: "
                               f"{reason or type(exc).__name__}")


# The server's refusals of a connect that only database_url's own options cause (an
# option it does not know, 42704, or whose value it refuses, 22023): no change on the
# server mends them, a fixed URL must.
BAD_OPTIONS = (asyncpg.UndefinedObjectError, asyncpg.InvalidParameterValueError)
# asyncpg's only word for a server that answers sslmode=require's TLS request with "no"
# (a plain ConnectionError, as for an outage).
_NO_TLS = "rejected SSL upgrade"


def _handshake_cut(exc: BaseException) -> bool:
    """Whether the server hung up in a TLS handshake: asyncio's TLS layer raises a
    ConnectionResetError with no text for a connection lost there (a reset socket's has
    errno and text)."""
    return isinstance(exc, ConnectionResetError) and not exc.args


def _direct_tls(dsn: str | None) -> bool:
    """Whether ``dsn`` (or PGSSLNEGOTIATION, where it names none) says sslnegotiation=direct."""
    try:
        given = parse_qs(urlsplit(dsn or "").query).get("sslnegotiation")
    except ValueError:
        given = None
    value = given[-1] if given else os.environ.get("PGSSLNEGOTIATION")
    return value == "direct"


def url_refusal(exc: BaseException, dsn: str | None) -> str | None:
    """What ``exc``, raised by a connect to ``dsn``, says is wrong with database_url
    itself, in one line naming the setting (never the URL: it holds the password); None
    for an outage or a refusal a change on the server mends (a role, password or
    database)."""
    if isinstance(exc, asyncpg.ClientConfigurationError):
        # sslmode=verify-full with no root certificate, say; its hint on later lines.
        return f"database_url: the Postgres client refuses it: {database_detail(exc)}"
    if isinstance(exc, BAD_OPTIONS):
        return f"database_url: the server refuses its options: {database_detail(exc)}"
    if isinstance(exc, ConnectionError) and _NO_TLS in str(exc):
        return ("database_url: its sslmode (require, verify-ca or verify-full, or that of "
                "PGSSLMODE) needs TLS, and the server does not offer TLS: enable ssl on the "
                "server, or set sslmode=prefer or disable")
    if _handshake_cut(exc) and _direct_tls(dsn):
        # A server that does not take TLS directly (no TLS, or PostgreSQL before 17)
        # reads the handshake as a bad startup packet and hangs up. One asked for TLS
        # first (sslnegotiation=postgres) that hangs up mid-handshake is going down.
        return ("database_url: its sslnegotiation=direct (or that of PGSSLNEGOTIATION) "
                "needs a server taking TLS directly, and the server hung up on the TLS "
                "handshake (no TLS, or PostgreSQL before 17): set sslnegotiation=postgres, "
                "or enable ssl on a PostgreSQL 17 or later server")
    return None


@contextlib.contextmanager
def refusing_bad_url(dsn: str | None) -> Iterator[None]:
    """Around a start's connect to ``dsn``: database_url's own fault (:func:`url_refusal`) raised
    as DatabaseUrlRefused (invalid settings); any other failure as it is."""
    try:
        yield
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if (refusal := url_refusal(exc, dsn)) is not None:
            raise DatabaseUrlRefused(refusal) from None
        raise


# The server's refusals of a connect that a change mends, on the server (a role made, a
# password rotated, a database restored) or in database_url: SQLSTATE class 28 (the role
# or its password), 3D000 (the database).
SERVER_REFUSALS = (asyncpg.InvalidAuthorizationSpecificationError,
                   asyncpg.InvalidCatalogNameError)


@contextlib.contextmanager
def connecting(dsn: str | None) -> Iterator[None]:
    """Around a command's or a start's connect to ``dsn``: :func:`refusing_bad_url`, and any other
    failed connection (OSError) or the server's refusal of the role, password or
    database as DatabaseUnreachable, each in one line naming the setting (the server's
    own words, "password authentication failed for user ...", named none)."""
    try:
        with refusing_bad_url(dsn):
            yield
    except OSError as exc:
        raise unreachable(exc) from exc
    except SERVER_REFUSALS as exc:
        raise DatabaseUnreachable(
            f"database_url: the server refuses it: {database_detail(exc)}") from exc


async def read_only(conn: asyncpg.Connection) -> bool:
    """Whether the database refuses writes: a standby (pointed at after a failover), or
    default_transaction_read_only set for the database or the role."""
    return bool(await conn.fetchval("SHOW transaction_read_only") == "on")


def database_problem(exc: BaseException) -> str:
    """What went wrong with Postgres, for a log line: the type, and what the admin must
    fix (see :func:`database_detail`)."""
    detail = database_detail(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def database_detail(exc: BaseException) -> str | None:
    """The server's own first line (a database or role that does not exist, a password
    refused; it never quotes the password) or the client's (a password file it cannot
    read, a root certificate missing, a server refusing TLS), or the system's word for a
    connection that failed."""
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) and str(exc):
        return str(exc).splitlines()[0]
    if isinstance(exc, OSError):
        # asyncpg raises a bare ConnectionError with its words alone (a server that
        # "rejected SSL upgrade" to sslmode=require): no strerror, only the text.
        if _handshake_cut(exc):  # no text of its own
            return "the server hung up on the TLS handshake"
        if isinstance(exc, TimeoutError) and not str(exc):
            # A connect's or a statement's timeout: the server, or the network, silent.
            return "no answer in time"
        return exc.strerror or str(exc) or None
    return None
