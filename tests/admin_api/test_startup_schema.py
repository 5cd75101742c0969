"""`postwarden-admin serve` on a database never migrated: one line naming the command to
run, no traceback. (One with migrations pending is served, /readyz answering 503:
tests/admin_api/test_smoke.py::test_readyz_is_503_while_a_migration_is_pending.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.conftest import PgServer
from tests.fixtures.adminapp import TEST_SECRET_KEY
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import create_database, drop_database


@pytest.mark.postgres
def test_a_database_never_migrated_is_refused_in_one_line(pg_server: PgServer) -> None:
    name = asyncio.run(create_database(pg_server.admin_dsn))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {"POSTWARDEN_DATABASE_URL": pg_server.dsn(name),
            "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY,
            "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}"}
    try:
        done = subprocess.run([sys.executable, "-m", "postwarden_admin_api", "serve"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
    finally:
        asyncio.run(drop_database(pg_server.admin_dsn, name))
    assert done.stderr.splitlines() == [
        "postwarden-admin: the database has no postwarden schema: "
        "run `postwarden-admin migrate` first"]
    assert done.returncode == 1
