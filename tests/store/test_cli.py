"""`postwarden-store`: its help, and `migrate --dry-run` as the README shows it."""

from __future__ import annotations

import asyncio

import pytest

from postwarden_store import apply_migrations, connect, pending_migrations
from postwarden_store.cli import main
from postwarden_store.migrations import available_migrations
from tests.conftest import PgServer
from tests.fixtures.postgres import create_database, drop_database


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_is_an_answer_not_an_error(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out.startswith("usage: postwarden-store migrate")


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
