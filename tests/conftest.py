"""Fixtures shared by every test package.

`pg_server` is one PostgreSQL for the whole session (a throwaway cluster, or
the server named by POSTWARDEN_TEST_DATABASE_URL). `database_url` gives each
test module its own migrated database; `fresh_database_url` gives one test a
database of its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from postwarden_store import migrate_database

from .fixtures.postgres import PostgresCluster, create_database, drop_database
from .fixtures.signals import interrupt_on_termination


def pytest_configure(config: pytest.Config) -> None:
    interrupt_on_termination()  # a cancelled CI job still tears the servers down


@dataclass(frozen=True)
class PgServer:
    admin_dsn: str
    cluster: PostgresCluster | None  # None when an external server is used

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("POSTWARDEN_TEST_DATABASE_URL")
    if external:
        yield PgServer(external, None)
        return
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield PgServer(cluster.admin_dsn, cluster)
    finally:
        cluster.destroy()


async def _migrated_database(server: PgServer) -> str:
    name = await create_database(server.admin_dsn)
    await migrate_database(server.dsn(name))
    return name


@pytest.fixture(scope="module")
def database_url(pg_server: PgServer) -> Iterator[str]:
    """A migrated database shared by the tests of one module."""
    name = asyncio.run(_migrated_database(pg_server))
    yield pg_server.dsn(name)
    asyncio.run(drop_database(pg_server.admin_dsn, name))


@pytest_asyncio.fixture
async def fresh_database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A migrated database for one test."""
    name = await _migrated_database(pg_server)
    yield pg_server.dsn(name)
    await drop_database(pg_server.admin_dsn, name)
