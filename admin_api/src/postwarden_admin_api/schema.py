"""The check that the database was ever migrated, for whatever needs its tables.

``serve`` and the CLI's database commands (keys, secrets) run it first: on a
database never migrated every later step would fail on a missing table, with
a traceback that does not say what to do. Pending migrations pass here: the
keys and secrets commands run on a schema a migration behind, and ``serve`` checks
for them next (app, ``check_schema_current``), then that the database takes writes
(:func:`require_writable`).
"""

from __future__ import annotations

import asyncpg

from postwarden_store import DatabaseReadOnly, read_only
from postwarden_store.migrations import applied_migrations


class NotMigrated(Exception):
    def __init__(self) -> None:
        super().__init__("the database has no postwarden schema: "
                         "run `postwarden-admin migrate` first")


async def require_schema(conn: asyncpg.Connection) -> None:
    """Raise :class:`NotMigrated` unless a migration was ever applied."""
    if not await applied_migrations(conn):
        raise NotMigrated


async def require_writable(conn: asyncpg.Connection) -> None:
    """Raise :class:`~postwarden_store.DatabaseReadOnly` on a database that refuses writes:
    start-up writes (the stored recipient-hash key), and failed on it with a traceback."""
    if await read_only(conn):
        raise DatabaseReadOnly
