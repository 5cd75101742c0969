"""What refuses a start: the checks the milter, or the supervisor for its workers,
makes before it serves, each raising :class:`~.errors.StartupError` with what the
admin must fix (a schema too old, policies that do not load, a socket or metrics
address that cannot be served, options in database_url the client or server refuses,
sslmode=require against a server without TLS). A database that is down, silent (no
answer in time), or refuses database_url's role, password or database, refuses
nothing here: audit events are spooled until it is back or fixed (but a milter with no
policies other than the database's and no last good set cannot start: :func:`refused_start`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from postwarden_policies import PoliciesError, PolicyLoadError
from postwarden_store import (
    DatabaseUrlRefused,
    MigrationError,
    SchemaTooOld,
    check_schema_current,
    connect,
    database_problem,
    ending_unanswered,
    read_only,
    refusing_bad_url,
)
from postwarden_store.policies import fetch_active_sources

from .audit_pipeline import REFUSALS
from .errors import NotYet, StartupError
from .listener import bind_problem, host_problem, resolve_problem, served_elsewhere, unix_path
from .reload import LastGoodUnusable, PolicyFiles, RunningSet, last_good_set
from .settings import MilterSettings
from .spool import lock_directory

# Under the name of the module these checks left (app), which its log lines have
# always carried: log filters, and admins' greps, select on it.
log = logging.getLogger("postwarden_milter.app")

SCHEMA_TIMEOUT = 10.0  # for the connect, then as long for the answers
# A database that took the connect, and did not answer the check in time: why, said.
SILENT = (f"no answer to the schema check within {SCHEMA_TIMEOUT:g} s (a lock held on "
          "schema_migrations: a DDL on it, VACUUM FULL; or the server stopped answering)")


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    reachable: bool  # False: the schema could not be asked
    silent: bool = False  # connected, but no answer to the check within SCHEMA_TIMEOUT
    refusal: str | None = None  # what the server said, refusing database_url's role,
    # password or database (until the admin mends it: refused_start)
    active: list[tuple[str, str]] | None = None  # the active policies, when asked for
    read_only: bool = False  # it refuses writes: audit events are spooled


class SchemaUnanswered(Exception):
    """The database took the connect, then did not answer the check in time."""


def check_schema(dsn: str, read_active: bool = False, *,
                 alone: Callable[[], bool] = lambda: False) -> DatabaseCheck:
    """Refuse to start against a database that lacks migrations, or with options in
    database_url the server refuses; tolerate one that is down, silent (no answer within
    :data:`SCHEMA_TIMEOUT`, to the connect or to the check), or refuses the role,
    password or database (those a change on the server mends, a password rotated, a
    database restored, without a restart here: meanwhile mail flows, its audit events
    spooled), or refuses writes (a standby: the audit writer says so). ``read_active``:
    also read the active policies (a check's). ``alone``: whether the start has no
    policies but the database's (asked of a refusal alone: it reads spool_dir)."""

    async def ask(conn: asyncpg.Connection) -> DatabaseCheck:
        await check_schema_current(conn)
        active = await fetch_active_sources(conn) if read_active else None
        return DatabaseCheck(reachable=True, active=active, read_only=await read_only(conn))

    async def check() -> DatabaseCheck:
        with refusing_bad_url(dsn):
            conn = await connect(dsn, connect_timeout=SCHEMA_TIMEOUT)
        try:
            # Bounded: a lock held on schema_migrations, or a database frozen since the
            # connect, held the start (no socket, all mail deferred) for as long.
            with ending_unanswered(conn):
                return await asyncio.wait_for(ask(conn), SCHEMA_TIMEOUT)
        except TimeoutError:
            raise SchemaUnanswered from None
        finally:
            # Not close(), which waits for the server to close the connection: one that
            # stopped answering once it answered held the start for ever.
            conn.terminate()

    try:
        return asyncio.run(check())
    except SchemaUnanswered:
        log.warning("database at start: %s; audit events are spooled until it answers", SILENT)
        return DatabaseCheck(reachable=False, silent=True)
    except SchemaTooOld as exc:
        raise NotYet(str(exc)) from None
    except MigrationError as exc:  # applied by another build: no wait mends it
        raise StartupError(str(exc)) from None
    except DatabaseUrlRefused as exc:
        # The client or server refuses the URL's own options (sslmode=verify-full with no
        # root certificate, TLS the server does not offer, an unknown server setting): no
        # outage to wait out, the admin must fix the setting.
        raise StartupError(str(exc)) from None
    except REFUSALS as exc:
        refusal = database_problem(exc)
        log.error("database refuses database_url at start (%s): %s", refusal,
                  refused_start(alone()))
        return DatabaseCheck(reachable=False, refusal=refusal)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.warning("database unreachable at start (%s): audit events are spooled until it is back",
                    database_problem(exc))
        return DatabaseCheck(reachable=False)


def refused_start(alone: bool) -> str:
    """What a start does on a database that refuses database_url (`check` says it too): it
    audits nothing to it until that is fixed, and with no policies but the database's
    (``alone``) it cannot start."""
    if alone:  # a start's NotYet: exit 1, retried
        return ("with no usable last good policy set in spool_dir, the milter does not "
                "start (exit 1, retried) until database_url or the server is fixed")
    return "the milter starts and spools audit events until database_url or the server is fixed"


def no_policy_source(settings: MilterSettings,
                     warn: Callable[[str], None] = lambda _: None) -> bool:
    """Whether a start would have no policies but the database's: no policy_dir, and no
    last good set in spool_dir it can run (why one cannot, to ``warn``)."""
    return settings.policy_dir is None and not last_good_runs(settings, warn)


def last_good_runs(settings: MilterSettings, warn: Callable[[str], None]) -> bool:
    """Whether spool_dir keeps a last good set a start can run (why one cannot, to ``warn``)."""
    try:
        return last_good_set(settings.spool_dir) is not None
    except LastGoodUnusable as exc:
        warn(f"cannot fall back on the last good policy set: {exc}")
        return False


def policies_refused(exc: PoliciesError) -> StartupError:
    """Every problem, each at its file, line and column as `postwarden-policy check`
    prints them: the error's own text names the first alone ("(and 4 more)")."""
    if isinstance(exc, PolicyLoadError) and exc.issues:
        return StartupError("policies do not load: "
                            + "\n  ".join(str(issue) for issue in exc.in_order()))
    return StartupError(f"policies do not load: {exc}")


@dataclass(frozen=True, slots=True)
class Preflight:
    policies: RunningSet | None  # policy_dir's; None: the database's active set
    database: DatabaseCheck | None  # None: no database configured


def preflight(settings: MilterSettings) -> Preflight:
    """What refuses a start before anything is served: a schema too old, policy_dir's
    policies not loading (StartupError). An unreachable database does not."""
    database = None
    if settings.database_url is not None:
        database = check_schema(settings.database_url.reveal(),
                                read_active=settings.policy_dir is None,
                                alone=lambda: no_policy_source(settings))
    policies = None
    if settings.policy_dir is not None:
        files = PolicyFiles(settings.policy_dir)
        try:
            policies = RunningSet(files.load(), files)
        except PoliciesError as exc:
            raise policies_refused(exc) from None
    return Preflight(policies, database)


def claim_spool_dir(directory: Path) -> None:
    """Hold ``directory`` for this milter and the workers it forks, until they exit; a
    StartupError if another milter holds it. Its spools and journals are the running
    workers' own: a second start (by hand, with fewer processes, another socket) would
    adopt them as orphans and then write the same files."""
    try:
        lock_directory(directory)
    except BlockingIOError:
        raise StartupError(f"spool_dir {directory}: another milter runs with it") from None
    except OSError as exc:  # ENOLCK, EOPNOTSUPP, EINVAL: a filesystem without locks (NFS)
        # Not started unlocked: a second milter could then adopt the running one's spools.
        raise StartupError(f"spool_dir {directory}: cannot be locked ({exc.strerror}); "
                           "put it on a local filesystem") from None


def refuse_served_socket(connection: str) -> None:
    """Another milter serving our unix socket: refuse to start (StartupError). libmilter
    would unlink its file to bind ours, leaving it running unreachable."""
    if served_elsewhere(connection):
        raise StartupError(f"another milter is listening on {unix_path(connection)}")


# Why a listen fails that a wait mends, with no change here: a port another process holds
# may be let go, an address not on the host yet (at boot: a VIP, DHCP, an IPv6 address
# still tentative) is added, a resolver not answering yet answers. A name the resolver
# says does not exist, or a directory the milter may not write, wants the admin (exit 2).
TRANSIENT_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, socket.EAI_AGAIN})


def listen_refused(message: str, problem: OSError | None) -> StartupError:
    """``message``, with ``problem``'s reason: NotYet (exit 1, the unit retries) when a
    wait mends it, else a StartupError (exit 2)."""
    if problem is None:
        return StartupError(message)
    message = f"{message}: {problem.strerror}"
    if problem.errno in TRANSIENT_LISTEN_ERRNOS:
        return NotYet(message)
    return StartupError(message)


def socket_refused(connection: str) -> StartupError:
    """libmilter could not listen on ``connection`` (it only says so): with the reason."""
    return listen_refused(_cannot_serve(connection), bind_problem(connection))


def refuse_unresolved_hosts(settings: MilterSettings) -> None:
    """A host in milter_socket that resolves to no address of its family, or in
    metrics_listen to none: the start's bind fails on it (StartupError, or NotYet for a
    resolver not answering yet). For `check`, which binds nothing: the running milter
    may hold the ports."""
    problem = resolve_problem(settings.milter_socket)
    if problem is not None:
        raise listen_refused(_cannot_serve(settings.milter_socket), problem)
    address = settings.metrics_address
    if address is not None and (problem := host_problem(address[0])) is not None:
        raise listen_refused(_cannot_listen(settings), problem)


def _cannot_serve(connection: str) -> str:
    return f"milter_socket: cannot serve on {connection}"


def _cannot_listen(settings: MilterSettings) -> str:
    return f"metrics_listen: cannot listen on {settings.metrics_listen}"


def serve_metrics(settings: MilterSettings,
                  serve: Callable[[tuple[str, int]], Callable[[], None]]
                  ) -> Callable[[], None] | None:
    """``serve`` an endpoint on ``metrics_listen`` (None when it is off); returns its stop."""
    address = settings.metrics_address
    if address is None:
        return None
    try:
        return serve(address)
    except OSError as exc:
        # A name that does not resolve told as `check` tells it.
        raise listen_refused(_cannot_listen(settings), host_problem(address[0]) or exc) from None
