"""Numbered SQL migrations, applied in order under an advisory lock.

Each file ``NNNN_name.sql`` in ``migrations/`` runs in its own transaction
and is recorded in ``schema_migrations`` with its SHA-256, so an edited
migration that was already applied is detected instead of silently skipped.

A migration that alters a table waits for every transaction using it, and
while it waits every new query on that table queues behind it: one reader left
open (a psql session, a pg_dump) would stall the send API for as long. So a
migration waits for a lock :data:`LOCK_TIMEOUT_SECONDS` at most, then gives up, lets
traffic through for :data:`LOCK_PAUSE_SECONDS` and tries again, up to
:data:`LOCK_ATTEMPTS` times, naming the transactions open longer than that. So does
migrate's read of ``schema_migrations`` (a DDL on it, VACUUM FULL: it waited there,
saying nothing, for as long). A
migrate killed while it waits leaves a backend that gives up as soon, instead
of one holding its place in the lock queue, and one killed while a migration runs
leaves a backend that stops it within a second.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg

from .errors import MigrationError, SchemaTooOld
from .pool import connect

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# pg_advisory_lock key: the ASCII of "pwmigrat", so it collides with nothing of ours.
ADVISORY_LOCK_KEY = 0x70776D6967726174

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
# What migrate waits for, said (a lock held, a server that stopped answering: .watch).
READING = "the read of schema_migrations"
LOCKING = "its advisory lock (held while another migrate runs)"
UNLOCKING = "the release of its advisory lock"
# Told each step as it starts (.watch.Watch.step).
Step = Callable[[str], None]
INSERT_APPLIED = "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)"
LOCK_TIMEOUT_SECONDS = 2
LOCK_ATTEMPTS = 30
LOCK_PAUSE_SECONDS = 2.0
SET_LOCK_TIMEOUT = f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"
# A backend finds out that its client is gone only when it next answers it: a migrate
# killed mid-migration would leave its backend building an index over the whole audit
# table, every audit write waiting, for a migration rolled back in the end.
SET_CLIENT_CHECK = "SET LOCAL client_connection_check_interval = '1s'"
# Who may hold what a migration waits for: transactions of this database open longer.
LONG_TRANSACTIONS = """
SELECT pid, coalesce(nullif(application_name, ''), usename) AS who, state,
       extract(epoch FROM now() - xact_start)::bigint AS seconds
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND xact_start < now() - make_interval(secs => $1)
ORDER BY xact_start LIMIT 5
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # the file stem, e.g. "0001_audit"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@functools.cache
def available_migrations(directory: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    """The migrations this build ships, read once: they do not change under a running
    process, and /readyz asks on every probe."""
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return tuple(Migration(f.stem, f.read_text(encoding="utf-8")) for f in files)


async def applied_migrations(conn: asyncpg.Connection) -> dict[str, str]:
    """version -> checksum of each migration applied; empty for a database never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    return {row["version"]: row["checksum"] for row in await conn.fetch(SELECT_APPLIED)}


def _check_checksums(applied: dict[str, str], migrations: Sequence[Migration]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.version} differs from the one applied to this "
                f"database (recorded sha256 {recorded[:12]}, this build's "
                f"{migration.checksum[:12]}): it was migrated by another build of "
                "postwarden; run this build only where the migration it ships is the one "
                "applied (a released migration is never edited: a change is a new one)"
            )


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    migrations = available_migrations()
    applied = await applied_migrations(conn)
    _check_checksums(applied, migrations)
    return [m.version for m in migrations if m.version not in applied]


def _unwatched(what: str) -> None:
    """The steps of a migrate no :class:`.watch.Watch` watches go untold."""


async def migrate_pending(conn: asyncpg.Connection, step: Step = _unwatched) -> list[str]:
    """:func:`pending_migrations`, for migrate: each wait for a lock on
    ``schema_migrations`` bounded and said, as a migration's."""
    return await _waiting_for_locks(conn, READING, lambda: pending_migrations(conn), step)


async def check_schema_current(conn: asyncpg.Connection) -> None:
    """Raise :class:`SchemaTooOld` when migrations are pending."""
    pending = await pending_migrations(conn)
    if pending:
        raise SchemaTooOld(pending, never_migrated=len(pending) == len(available_migrations()))


async def apply_migrations(conn: asyncpg.Connection, step: Step = _unwatched) -> list[str]:
    """Apply pending migrations; several processes may race, the lock serialises them.
    ``step`` is told what each step waits for as it starts."""
    step(LOCKING)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY):
        # A warning, so that the CLIs, which set no logging up, show it on stderr.
        log.warning("another migrate is running: waiting for it to finish")
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        applied = await _waiting_for_locks(conn, READING, lambda: _created_and_read(conn),
                                           step)
        migrations = available_migrations()
        _check_checksums(applied, migrations)
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            await _apply(conn, migration, step)
            log.info("applied migration %s", migration.version)
            done.append(migration.version)
        return done
    finally:
        step(UNLOCKING)
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


async def _created_and_read(conn: asyncpg.Connection) -> dict[str, str]:
    await conn.execute(CREATE_TABLE)
    return await applied_migrations(conn)


async def _apply(conn: asyncpg.Connection, migration: Migration, step: Step) -> None:
    """Run ``migration`` in a transaction of its own, each wait for a lock bounded."""

    async def run() -> None:
        await conn.execute(migration.sql)
        await conn.execute(INSERT_APPLIED, migration.version, migration.checksum)

    await _waiting_for_locks(conn, f"migration {migration.version}", run, step)


async def _waiting_for_locks(conn: asyncpg.Connection, what: str,
                             work: Callable[[], Awaitable[T]], step: Step) -> T:
    """``work`` in a transaction of its own, each wait for a lock bounded (module
    docstring); MigrationError, naming ``what``, when the locks stay taken. ``step``
    is told ``what``."""
    step(what)
    attempt = 1
    while True:
        try:
            async with conn.transaction():
                await conn.execute(SET_LOCK_TIMEOUT)
                await conn.execute(SET_CLIENT_CHECK)
                return await work()
        except asyncpg.LockNotAvailableError:
            holders = await _long_transactions(conn)
            if attempt == LOCK_ATTEMPTS:
                raise MigrationError(
                    f"{what} could not take its locks ({attempt} tries, each waiting "
                    f"{LOCK_TIMEOUT_SECONDS} s): {holders}; end those transactions, or run "
                    "migrate again once they are done") from None
            log.warning("%s waits for a lock another transaction holds (try %d of %d): %s",
                        what, attempt, LOCK_ATTEMPTS, holders)
            await asyncio.sleep(LOCK_PAUSE_SECONDS)
            attempt += 1


async def _long_transactions(conn: asyncpg.Connection) -> str:
    rows = await conn.fetch(LONG_TRANSACTIONS, LOCK_TIMEOUT_SECONDS)
    if not rows:
        return f"no transaction open longer than {LOCK_TIMEOUT_SECONDS} s now"
    return "transactions open longer: " + ", ".join(
        f"pid {r['pid']} ({r['who']}, {r['state']}, {r['seconds']} s)" for r in rows)


async def migrate_database(dsn: str) -> list[str]:
    """Connect, apply pending migrations, disconnect; returns the versions applied."""
    conn = await connect(dsn)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
