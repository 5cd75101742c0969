"""`migrate` (postwarden-store's, postwarden-admin's) on a server that stopped answering
once connected (frozen, or a network dropping its packets) waited for ever, saying
nothing: its statements have no timeout, a migration may rightly run for minutes. While
a step waits (here for a lock another session holds, so that the freeze comes mid-step),
a probe on another connection now finds the server silent, and migrate exits 1 naming
the step. The lock is held by a session the freeze does not reach; a TCP relay on
loopback stands for the network (.dbrelay)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from postwarden_store import connect
from postwarden_store.migrations import ADVISORY_LOCK_KEY, LOCKING, READING
from tests.admin_api.test_database_lost_mid_transaction import WAITING_FOR_A_LOCK
from tests.fixtures.adminapp import TEST_SECRET_KEY
from tests.fixtures.dbrelay import relayed
from tests.fixtures.ports import free_port
from tests.webhooks.receiver import wait_for_async

pytestmark = pytest.mark.postgres

LAST = "0055_maillog_queue_id_arrival"
# The last migration undone, then a reader of the table it alters left open.
UNDO_LAST = """
DROP INDEX outbound_messages_queue_arrival_mark;
ALTER TABLE outbound_messages DROP COLUMN queue_arrival_mark
"""
Hold = Callable[[asyncpg.Connection], Awaitable[None]]


async def _another_migrate(holder: asyncpg.Connection) -> None:
    await holder.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)


async def _a_ddl_on_schema_migrations(holder: asyncpg.Connection) -> None:
    await holder.execute("BEGIN; LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")


async def _a_reader_of_the_last_migrations_table(holder: asyncpg.Connection) -> None:
    await holder.execute(UNDO_LAST)
    await holder.execute("DELETE FROM schema_migrations WHERE version = $1", LAST)
    await holder.execute("BEGIN; SELECT count(*) FROM outbound_messages")


async def _migrate(prog: str, database_url: str, *options: str
                   ) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    if prog == "postwarden-admin":
        env |= {"POSTWARDEN_DATABASE_URL": database_url,
                "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY,
                "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}"}
        argv = ["-m", "postwarden_admin_api", "migrate", *options]
    else:
        argv = ["-m", "postwarden_store.cli", "migrate", "--database-url", database_url,
                *options]
    return await asyncio.create_subprocess_exec(
        sys.executable, *argv, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


async def _ended(migrating: asyncio.subprocess.Process) -> tuple[int | None, bytes, bytes]:
    """Its exit status, stdout and stderr; killed past the test's own bound (it hung for
    ever)."""
    try:
        async with asyncio.timeout(60):
            out, err = await migrating.communicate()
    finally:
        if migrating.returncode is None:
            migrating.kill()
            await migrating.wait()
    return migrating.returncode, out, err


@pytest.mark.parametrize(("prog", "hold", "options", "step"), [
    ("postwarden-store", _another_migrate, (), LOCKING),
    ("postwarden-store", _a_ddl_on_schema_migrations, (), READING),
    ("postwarden-store", _a_ddl_on_schema_migrations, ("--dry-run",), READING),
    ("postwarden-admin", _a_ddl_on_schema_migrations, (), READING),
    ("postwarden-store", _a_reader_of_the_last_migrations_table, (), f"migration {LAST}"),
], ids=["advisory-lock", "read", "read-dry-run", "admin-read", "migration"])
async def test_migrate_on_a_server_frozen_mid_step_exits_naming_the_step(
    fresh_database_url: str, prog: str, hold: Hold, options: tuple[str, ...], step: str,
) -> None:
    holder = await connect(fresh_database_url)
    try:
        await hold(holder)
        async with relayed(fresh_database_url) as (relay, through):
            migrating = await _migrate(prog, through, *options)

            async def waiting() -> bool:
                # Its statistics are read once per transaction, which the holder may be in.
                await holder.execute("SELECT pg_stat_clear_snapshot()")
                return bool(await holder.fetch(WAITING_FOR_A_LOCK))

            if await wait_for_async(waiting):
                relay.freeze()
            returncode, out, err = await _ended(migrating)
    finally:
        await holder.close()
    assert (returncode, out) == (1, b"")
    assert err.decode().splitlines()[-1] == (
        f"{prog} migrate: the database gave no answer within 10 s while migrate waited for "
        f"{step}; the migrations applied so far stay, none is applied in part: run migrate "
        "again once it answers")


async def test_migrate_on_a_server_frozen_before_it_connects_says_so_in_one_line(
    database_url: str,
) -> None:
    """The connect's own bound, not the probe's, tells: it names the setting."""
    async with relayed(database_url) as (relay, through):
        relay.freeze()
        returncode, out, err = await _ended(await _migrate("postwarden-store", through))
    assert (returncode, out, err.decode().splitlines()) == (1, b"", [
        "postwarden-store migrate: database_url: cannot reach the database: "
        "no answer within 10 s"])
