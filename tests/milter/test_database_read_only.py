"""A database that refuses writes (a standby the milter was pointed at after a
failover, default_transaction_read_only set for maintenance). The milter starts on it
and spools its audit events, as for an outage, until it takes them. The writer said at
each retry, up to every 30 s, that it connected to Postgres and then that the database
was unavailable, in the server's words on a "SELECT FOR SHARE"; it says once that the
database refuses writes. `check` said "schema up to date" alone."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from postwarden_store import connect
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import set_read_only, wait_until
from tests.milter.milterclient import MilterClient
from tests.milter.test_process import _env, _run, _serving

pytestmark = pytest.mark.postgres

QUEUE_IDS = ["4QREADONLY0", "4QREADONLY1", "4QREADONLY2"]
READ_ONLY_LINE = ("audit database refuses writes (read-only: a standby, or "
                  "default_transaction_read_only on): audit events are spooled until it takes "
                  "them; point database_url at the primary")


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of the test's own: it is made read-only."""
    return fresh_database_url


def _stored_queue_ids(database_url: str) -> list[str]:
    async def fetch() -> list[str]:
        conn = await connect(database_url)
        try:
            rows = await conn.fetch("SELECT queue_id FROM audit_events ORDER BY queue_id")
        finally:
            await conn.close()
        return [row["queue_id"] for row in rows]

    return asyncio.run(fetch())


def _counter(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        found = re.search(rf"^{re.escape(name)} (\S+)$", response.read().decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_check_says_the_database_refuses_writes(database_url: str, tmp_path: Path) -> None:
    asyncio.run(set_read_only(database_url))
    done = _run(["check"], _env(tmp_path, database_url=database_url))
    assert done.returncode == 0, done.stderr  # a start would go on, spooling
    assert done.stdout.splitlines()[2:] == [
        "database: schema up to date, but it refuses writes (read-only: a standby, or "
        "default_transaction_read_only on); the milter would start and spool audit events "
        "until it takes them"]


def test_the_milter_spools_on_a_read_only_database_and_says_so_once(
    database_url: str, tmp_path: Path
) -> None:
    asyncio.run(set_read_only(database_url))
    port = free_port()
    env = _env(tmp_path, database_url=database_url, metrics_listen=f"127.0.0.1:{port}")
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: "listening on" in log_path.read_text(), timeout=30)
        for queue_id in QUEUE_IDS:
            client = MilterClient(env["POSTWARDEN_MILTER_SOCKET"]).open()
            with closing(client.sock):
                assert client.message(queue_id)[0] == b"c"  # mail flows
        assert wait_until(lambda: _counter(port, "postwarden_audit_spooled_total") == 3,
                          timeout=30)
        # Retried meanwhile: the line stays one.
        assert wait_until(lambda: _counter(port, 'postwarden_errors_total{kind="audit_db"}')
                          >= 4, timeout=30)
        log = log_path.read_text()
        assert log.count("audit database") == 1 and READ_ONLY_LINE in log, log
        assert "Traceback" not in log and "connected to Postgres" not in log, log
        asyncio.run(set_read_only(database_url, on=False))  # promoted, say: the spool is replayed
        assert wait_until(lambda: _stored_queue_ids(database_url) == QUEUE_IDS, timeout=60)
        proc.terminate()
        assert proc.wait(30) == 0
    assert "Traceback" not in log_path.read_text()
