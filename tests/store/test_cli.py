"""`postwarden-store`: its help, `migrate --dry-run` as the README shows it, and a
migrate stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from postwarden_store import apply_migrations, connect, migrations, pending_migrations
from postwarden_store.cli import main
from postwarden_store.migrations import available_migrations
from tests.conftest import PgServer
from tests.fixtures.postgres import create_database, drop_database, wait_until

# Ctrl-C as from a terminal: a run started in the background by a non-interactive shell
# (a CI step's `make test &`) ignores SIGINT, and a child inherits that.
MIGRATE = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "from postwarden_store.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_is_an_answer_not_an_error(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out.startswith("usage: postwarden-store migrate")


def test_help_describes_the_commands_and_options() -> None:
    """It printed its usage line alone, where `postwarden-milter --help` says what the
    command is for, its options and its commands."""
    done = subprocess.run([sys.executable, "-m", "postwarden_store.cli", "--help"],
                          capture_output=True, text=True, timeout=60, check=True)
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert "-h, --help show this help message and exit" in lines
    assert "migrate apply the pending database migrations" in lines
    assert "'postwarden-store migrate --help' describes its options." in lines


def test_anything_else_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["upgrade"]) == 2
    assert capsys.readouterr().err.count("usage: postwarden-store migrate") == 2


async def test_dry_run_lists_what_migrate_would_apply_and_applies_nothing(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    name = await create_database(pg_server.admin_dsn)
    url = pg_server.dsn(name)
    try:
        # main runs its own event loop: not on the test's.
        assert await asyncio.to_thread(main, ["migrate", "--database-url", url, "--dry-run"]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed == [f"pending {m.version}" for m in available_migrations()]
        conn = await connect(url)
        try:
            assert len(await pending_migrations(conn)) == len(listed)
            await apply_migrations(conn)
        finally:
            await conn.close()
        # Nothing pending says so, rather than printing nothing at all.
        assert await asyncio.to_thread(main, ["migrate", "--database-url", url, "--dry-run"]) == 0
        assert capsys.readouterr().out == "schema is current\n"
    finally:
        await drop_database(pg_server.admin_dsn, name)


async def test_a_migrate_stopped_with_ctrl_c_says_so_in_one_line(
    fresh_database_url: str, tmp_path: Path
) -> None:
    # Ctrl-C while it waited (here for another migrate) ended in two tracebacks.
    holder = await connect(fresh_database_url)
    err = tmp_path / "stderr"
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrations.ADVISORY_LOCK_KEY)
        with err.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", MIGRATE, "migrate", "--database-url",
                fresh_database_url, stderr=stderr)
        try:
            assert await asyncio.to_thread(
                wait_until, lambda: "another migrate is running" in err.read_text(), 30)
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 30) == 130
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        await holder.close()
    assert err.read_text().splitlines()[1:] == [
        "postwarden-store migrate: interrupted: the migrations applied so far stay, none "
        "is applied in part; run migrate again for the rest"]
