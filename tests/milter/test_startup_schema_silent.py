"""A database that takes the connect and then does not answer the start's check of its
schema: a lock held on schema_migrations (a DDL on it, VACUUM FULL), or a server frozen
since. The start waited for as long, its socket never opened (all mail deferred) and
`check` hung too. Now each gives up after SCHEMA_TIMEOUT, as for a database unreachable
at start: the milter serves and spools its audit events, stored once the lock is
released; `check` says so and exits 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from postwarden_milter import startup_checks
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.startup_checks import SILENT, DatabaseCheck, check_schema
from tests.fixtures.milterproc import running_milter
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.milter.milterclient import MilterClient
from tests.milter.test_audit_wedges import _session, relayed_on
from tests.milter.test_database_read_only import _counter, _stored_queue_ids
from tests.milter.test_process import _env, _run

pytestmark = pytest.mark.postgres


@contextmanager
def _schema_migrations_locked(database_url: str) -> Iterator[Callable[[], Any]]:
    """ACCESS EXCLUSIVE on schema_migrations (as a DDL's) until the release it yields."""
    with _session(database_url) as run:
        run("BEGIN")
        run("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")
        try:
            yield lambda: run("ROLLBACK")
        finally:
            run("ROLLBACK")  # a warning only, once released


@pytest.mark.parametrize("processes", [1, 2])
def test_the_milter_starts_and_spools_while_schema_migrations_is_locked(
    database_url: str, tmp_path: Path, processes: int
) -> None:
    queue_ids = [f"4QSILENT{processes}{n}" for n in range(3)]
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text("version: 1\nname: main\n")
    port = free_port()
    env = {"POSTWARDEN_PROCESSES": str(processes),
           "POSTWARDEN_METRICS_LISTEN": f"127.0.0.1:{port}"}
    with _schema_migrations_locked(database_url) as release:
        with running_milter(policy_dir, database_url, env) as milter:  # its socket answers
            for queue_id in queue_ids:
                client = MilterClient(milter.env["POSTWARDEN_MILTER_SOCKET"]).open()
                with closing(client.sock):
                    assert client.message(queue_id)[0] == b"c"  # mail flows
            assert wait_until(lambda: _counter(port, "postwarden_audit_spooled_total")
                              == len(queue_ids), timeout=60), milter.log()
            assert f"database at start: {SILENT}" in milter.log()
            release()
            assert wait_until(lambda: set(queue_ids) <= set(_stored_queue_ids(database_url)),
                              timeout=90), milter.log()
            assert milter.stop() == 0
            assert "Traceback" not in milter.log()


def test_check_says_the_schema_check_got_no_answer(database_url: str, tmp_path: Path) -> None:
    with _schema_migrations_locked(database_url):
        done = _run(["check"], _env(tmp_path, database_url=database_url))
    assert done.returncode == 0, done.stderr  # a start would go on, spooling
    assert done.stdout.splitlines()[2:] == [
        f"database: {SILENT}; the milter would start and spool audit events"]



def test_a_database_frozen_once_the_schema_check_answered_holds_no_start(
    database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check answered, then the server stopped answering (a partition, a server
    stopped): the check's connection was closed with a goodbye, which waits for the
    server to close it, for ever; the start never served. It is now ended without one."""
    loop = LoopThread()
    loop.start()
    try:
        with relayed_on(loop, database_url) as (relay, through):
            asked = startup_checks.read_only

            async def then_frozen(conn: asyncpg.Connection) -> bool:
                answer = await asked(conn)
                relay.freeze()
                return answer

            monkeypatch.setattr(startup_checks, "read_only", then_frozen)
            with ThreadPoolExecutor(1) as running:
                checked = running.submit(check_schema, through)
                try:  # the test's bound: fails, not hangs
                    assert checked.result(timeout=30) == DatabaseCheck(reachable=True)
                finally:
                    loop.loop.call_soon_threadsafe(relay.thaw)
    finally:
        loop.stop()
