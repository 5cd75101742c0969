"""`postwarden-admin` on a database never migrated: `serve`, `keys ...` and `secrets
rotate` refuse in one line naming the command to run, with no traceback; `migrate`
is what they name, and it works there. `serve` refuses as well, before it listens,
a database with migrations pending or an applied migration changed: served, its
routes answered 500 and its workers logged an outage."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_store.migrations import INSERT_APPLIED, available_migrations
from tests.conftest import PgServer, _migrated_database
from tests.fixtures.adminapp import TEST_SECRET_KEY
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import create_database, drop_database

REFUSAL = ("postwarden-admin: the database has no postwarden schema: "
           "run `postwarden-admin migrate` first")


@pytest.fixture
def never_migrated(pg_server: PgServer) -> Iterator[str]:
    """The URL of an empty database."""
    name = asyncio.run(create_database(pg_server.admin_dsn))
    try:
        yield pg_server.dsn(name)
    finally:
        asyncio.run(drop_database(pg_server.admin_dsn, name))


@pytest.fixture
def behind(pg_server: PgServer) -> Iterator[str]:
    """The URL of a database migrated as an older version left it: the last three
    migrations not applied."""
    name = asyncio.run(create_database(pg_server.admin_dsn))
    url = pg_server.dsn(name)

    async def migrate_but_the_last_three() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                               "checksum text NOT NULL, "
                               "applied_at timestamptz NOT NULL DEFAULT now())")
            for migration in available_migrations()[:-3]:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(INSERT_APPLIED, migration.version, migration.checksum)
        finally:
            await conn.close()

    try:
        asyncio.run(migrate_but_the_last_three())
        yield url
    finally:
        asyncio.run(drop_database(pg_server.admin_dsn, name))


def _run(database_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {"POSTWARDEN_DATABASE_URL": database_url,
            "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY,
            "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}"}
    return subprocess.run([sys.executable, "-m", "postwarden_admin_api", *argv],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def assert_refused_in_one_line(database_url: str, tmp_path: Path, argv: list[str],
                               refusal: str, **names: str) -> None:
    """``argv`` run, "{new_key}" in it a new key file's path and other "{name}"s
    ``names``: it exits 1 with ``refusal`` its one line of output."""
    new_key = tmp_path / "new.key"
    new_key.write_text("22" * 32)
    done = _run(database_url, *(arg.format(new_key=new_key, **names) for arg in argv))
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [refusal])


@pytest.mark.postgres
@pytest.mark.parametrize("argv", [
    pytest.param(["serve"], id="serve"),
    pytest.param(["keys", "list"], id="keys-list"),
    pytest.param(["keys", "create", "--role", "admin", "--name", "first"], id="keys-create"),
    pytest.param(["keys", "revoke", "k1"], id="keys-revoke"),
    pytest.param(["keys", "rotate", "k1"], id="keys-rotate"),
    pytest.param(["secrets", "rotate", "--new-key-file", "{new_key}"], id="secrets-rotate"),
])
def test_a_database_never_migrated_is_refused_in_one_line(
    never_migrated: str, tmp_path: Path, argv: list[str]
) -> None:
    assert_refused_in_one_line(never_migrated, tmp_path, argv, REFUSAL)


@pytest.mark.postgres
def test_migrate_is_not_refused_and_then_keys_work(never_migrated: str) -> None:
    pending = _run(never_migrated, "migrate", "--dry-run")  # as postwarden-store's lists them
    assert pending.returncode == 0, pending.stderr
    assert pending.stdout.startswith("pending 0001_")
    migrated = _run(never_migrated, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied 0001_")
    listed = _run(never_migrated, "keys", "list")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "")


@pytest.mark.postgres
def test_serve_refuses_a_database_with_migrations_pending_naming_what_applies_them(
    behind: str
) -> None:
    pending = [m.version for m in available_migrations()[-3:]]
    done = _run(behind, "serve")
    assert done.stderr.splitlines() == [
        f"postwarden-admin: database schema is missing 3 migration(s) ({', '.join(pending)}); "
        "run `postwarden-admin migrate`"]
    assert (done.returncode, done.stdout) == (1, "")
    assert _run(behind, "migrate").stdout.splitlines() == [f"applied {v}" for v in pending]


@pytest.mark.postgres
def test_serve_refuses_a_database_whose_applied_migration_was_changed(
    fresh_database_url: str
) -> None:
    first = available_migrations()[0].version

    async def change() -> None:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = $1",
                               first)
        finally:
            await conn.close()

    asyncio.run(change())
    done = _run(fresh_database_url, "serve")
    [line] = done.stderr.splitlines()  # the store's text: what differs, and what it means
    assert line.startswith(f"postwarden-admin: migration {first} differs from the one applied")
    assert (done.returncode, done.stdout) == (1, "")


@pytest.fixture
def refusing_a_start_write(pg_server: PgServer) -> Iterator[str]:
    """The URL of a migrated database that refuses the write of a start-up step run after
    the retention job began (the send API's stored recipient-hash key): as a role
    without the privilege, or a connection lost there, would."""
    name = asyncio.run(_migrated_database(pg_server))
    url = pg_server.dsn(name)

    async def refuse() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("""
                CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON send_hash_key
                    FOR EACH ROW EXECUTE FUNCTION refuse()""")
        finally:
            await conn.close()

    try:
        asyncio.run(refuse())
        yield url
    finally:
        asyncio.run(drop_database(pg_server.admin_dsn, name))


@pytest.mark.postgres
def test_a_later_start_step_failing_is_told_in_one_line(refusing_a_start_write: str) -> None:
    """The steps started before it (the retention job) were left running: asyncio's
    shutdown logged a traceback above the line."""
    done = _run(refusing_a_start_write, "serve")
    assert (done.returncode, done.stderr.splitlines()) == (
        1, ["postwarden-admin: refused by the test"])


# serve, its statements' command timeout made 1 s.
SERVE_QUICK_TIMEOUT = ("import sys; from postwarden_admin_api import app; "
                       "app.COMMAND_TIMEOUT = 1.0; from postwarden_admin_api.cli import main; "
                       "sys.exit(main(['serve']))")


@pytest.mark.postgres
async def test_a_start_step_without_answer_is_told_in_one_line(database_url: str) -> None:
    """A start-up statement that got no answer within the command timeout (a server
    frozen, or as here a lock held) ended serve with "postwarden-admin: " and nothing
    after it: asyncpg's TimeoutError has no text."""
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")
            env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
            env |= {"POSTWARDEN_DATABASE_URL": database_url,
                    "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY,
                    "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}"}
            serve = await asyncio.create_subprocess_exec(
                sys.executable, "-c", SERVE_QUICK_TIMEOUT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            async with asyncio.timeout(60):  # the test's own bound
                out, err = await serve.communicate()
    finally:
        await holder.close()
    assert (serve.returncode, out, err.decode().splitlines()) == (
        1, b"", ["postwarden-admin: the database gave no answer in time"])
