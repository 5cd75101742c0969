"""An audit batch commits once it is on the local disk, whatever the server's
synchronous_commit: the milter no longer spools a batch the store said was written, and
a commit that did not wait for the WAL flush is lost in a crash. ``off`` becomes
``local`` (no wait for a synchronous standby, which a role set ``off`` may avoid on
purpose); every other setting waits for the flush already and stays. The milter's probe
of a slow database commits the same way as a batch."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postwarden_milter.audit_pipeline import PROBE
from postwarden_store import connect, write_audit_batch
from postwarden_store.audit import DURABLE_COMMIT, SET_BATCH_SETTINGS, Written
from tests.conftest import PgServer
from tests.fixtures.postgres import durable_commits_hang
from tests.store.test_audit import make_event

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize(("session", "batch"), [
    ("off", "local"), ("local", "local"), ("on", "on"), ("remote_write", "remote_write"),
    ("remote_apply", "remote_apply"),
])
@pytest.mark.parametrize("statement", [DURABLE_COMMIT, SET_BATCH_SETTINGS])
async def test_a_batch_commits_durably_with_the_setting_it_had_if_that_is_durable(
    database_url: str, session: str, batch: str, statement: str
) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute(f"SET synchronous_commit = {session}")
        async with conn.transaction():
            await conn.execute(statement, *(["1s"] if "$1" in statement else []))
            assert await conn.fetchval("SHOW synchronous_commit") == batch
        assert await conn.fetchval("SHOW synchronous_commit") == session  # for it alone
    finally:
        await conn.close()


async def test_write_audit_batch_sets_it_inside_its_transaction(database_url: str) -> None:
    conn = await connect(database_url)
    seen: list[tuple[str, bool]] = []
    conn.add_query_logger(lambda logged: seen.append(
        (logged.query, conn.is_in_transaction())))
    try:
        await conn.execute("SET synchronous_commit = off")
        assert await write_audit_batch(conn, [make_event()]) == Written(1, 0)
    finally:
        await conn.close()
    assert (SET_BATCH_SETTINGS, True) in seen


def test_the_probe_commits_as_a_batch_does() -> None:
    assert PROBE.startswith(f"BEGIN; {DURABLE_COMMIT}; ")


async def test_off_waits_for_no_synchronous_standby(
    database_url: str, pg_server: PgServer
) -> None:
    """A role set off so as not to wait for a synchronous standby (one that is away, as
    here) still gets its batches written: local waits for the local disk alone."""
    conn = await connect(database_url)
    try:
        await conn.execute("SET synchronous_commit = off")
        async with durable_commits_hang(pg_server.admin_dsn):
            assert await asyncio.wait_for(write_audit_batch(conn, [make_event()]), 10) \
                == Written(1, 0)
            probe: asyncpg.Connection = await connect(database_url)
            try:
                await probe.execute("SET synchronous_commit = off")
                await asyncio.wait_for(probe.execute(PROBE), 10)
            finally:
                await probe.close()
    finally:
        await conn.close()
