"""The migration runner against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from postwarden_store import (
    MigrationError,
    SchemaTooOld,
    apply_migrations,
    check_schema_current,
    connect,
    pending_migrations,
)
from postwarden_store.migrations import available_migrations
from tests.conftest import PgServer
from tests.fixtures.postgres import create_database, drop_database


async def test_migrated_database_is_current(fresh_database_url: str) -> None:
    conn = await connect(fresh_database_url)
    try:
        assert await pending_migrations(conn) == []
        await check_schema_current(conn)
        assert await apply_migrations(conn) == []  # idempotent
    finally:
        await conn.close()


async def test_empty_database_reports_every_migration(pg_server: PgServer) -> None:
    name = await create_database(pg_server.admin_dsn)
    conn = await connect(pg_server.dsn(name))
    try:
        expected = [m.version for m in available_migrations()]
        assert expected, "there must be at least one migration"
        with pytest.raises(SchemaTooOld) as info:
            await check_schema_current(conn)
        assert info.value.pending == expected
        assert "postwarden-store migrate" in str(info.value)
    finally:
        await conn.close()
        await drop_database(pg_server.admin_dsn, name)


async def test_concurrent_migrators_apply_each_migration_once(pg_server: PgServer) -> None:
    name = await create_database(pg_server.admin_dsn)
    conns = [await connect(pg_server.dsn(name)) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        applied = [version for result in results for version in result]
        assert sorted(applied) == [m.version for m in available_migrations()]
    finally:
        for conn in conns:
            await conn.close()
        await drop_database(pg_server.admin_dsn, name)


async def test_edited_migration_is_detected(fresh_database_url: str) -> None:
    conn = await connect(fresh_database_url)
    try:
        first = available_migrations()[0]
        await conn.execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = $1", first.version
        )
        with pytest.raises(MigrationError, match="differs from the one applied to this database"):
            await pending_migrations(conn)
    finally:
        await conn.close()
