"""`migrate` (postwarden-store's, postwarden-milter's, postwarden-admin's) on a database
that refuses writes (a standby, default_transaction_read_only on) printed asyncpg's
"cannot execute CREATE TABLE in a read-only transaction": it says what is wrong and
what to do in one line, as `serve` does, and exits 1. --dry-run, which writes
nothing, still lists what is pending."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.admin_api.test_startup_schema import _run
from tests.fixtures.postgres import set_read_only

pytestmark = pytest.mark.postgres

REFUSAL = ("the database refuses writes (a standby, or default_transaction_read_only on): "
           "point database_url at the primary")


def _migrate(prog: str, database_url: str, *options: str) -> subprocess.CompletedProcess[str]:
    if prog == "postwarden-admin":
        return _run(database_url, "migrate", *options)
    module = {"postwarden-store": "postwarden_store.cli", "postwarden-milter": "postwarden_milter"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    return subprocess.run(
        [sys.executable, "-m", module[prog], "migrate", "--database-url", database_url,
         *options], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("prog", ["postwarden-store", "postwarden-milter", "postwarden-admin"])
def test_migrate_on_a_read_only_database_says_so_in_one_line(
    fresh_database_url: str, prog: str
) -> None:
    asyncio.run(set_read_only(fresh_database_url))
    done = _migrate(prog, fresh_database_url)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (
        1, "", [f"{prog} migrate: {REFUSAL}"])
    listed = _migrate(prog, fresh_database_url, "--dry-run")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "schema is current\n", "")
