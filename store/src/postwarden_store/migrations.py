"""Numbered SQL migrations, applied in order under an advisory lock.

Each file ``NNNN_name.sql`` in ``migrations/`` runs in its own transaction
and is recorded in ``schema_migrations`` with its SHA-256, so an edited
migration that was already applied is detected instead of silently skipped.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .errors import MigrationError, SchemaTooOld
from .pool import connect

log = logging.getLogger(__name__)

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
INSERT_APPLIED = "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)"


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # the file stem, e.g. "0001_audit"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [Migration(f.stem, f.read_text(encoding="utf-8")) for f in files]


async def applied_migrations(conn: asyncpg.Connection) -> dict[str, str]:
    """version -> checksum of each migration applied; empty for a database never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    return {row["version"]: row["checksum"] for row in await conn.fetch(SELECT_APPLIED)}


def _check_checksums(applied: dict[str, str], migrations: list[Migration]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.version} was changed after it was applied "
                "(checksum mismatch); add a new migration instead"
            )


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    migrations = available_migrations()
    applied = await applied_migrations(conn)
    _check_checksums(applied, migrations)
    return [m.version for m in migrations if m.version not in applied]


async def check_schema_current(conn: asyncpg.Connection) -> None:
    """Raise :class:`SchemaTooOld` when migrations are pending."""
    pending = await pending_migrations(conn)
    if pending:
        raise SchemaTooOld(pending)


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; several processes may race, the lock serialises them."""
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(CREATE_TABLE)
        migrations = available_migrations()
        applied = await applied_migrations(conn)
        _check_checksums(applied, migrations)
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(INSERT_APPLIED, migration.version, migration.checksum)
            log.info("applied migration %s", migration.version)
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


async def migrate_database(dsn: str) -> list[str]:
    """Connect, apply pending migrations, disconnect; returns the versions applied."""
    conn = await connect(dsn)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
