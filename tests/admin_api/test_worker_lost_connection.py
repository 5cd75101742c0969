"""A background loop's pooled connection lost between two of its statements
(PostgreSQL restarting, its backend terminated) was logged as asyncpg's InterfaceError
"connection has been released back to the pool", which reads as a bug of ours: it is
named as a lost connection, in the outage's one line, without a traceback. The
periodic jobs (retention) are shown here, the webhook worker in
tests/webhooks/test_lost_connection.py; the relay, maillog follower and interrupted-send
worker take their connections the same way (periodic.pooled)."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest

from tests.admin_api.test_database_lost_between_statements import _lose
from tests.admin_api.test_periodic import _run_until

pytestmark = pytest.mark.postgres

LOST = ("database or file unavailable (ConnectionDoesNotExistError: the connection was "
        "lost between statements); said again at most once a minute until it is back")


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, bool]]:
    """The outage lines logged, with whether each had a traceback."""
    return [(re.sub(r"after \d+ s", "after N s", r.getMessage()), r.exc_info is not None)
            for r in caplog.records if r.name == "postwarden_admin_api.outages"]


async def test_a_periodic_jobs_connection_lost_between_statements_is_named(
    database_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    again = asyncio.Event()

    async def job(conn: asyncpg.Connection) -> None:
        rounds.append(await conn.fetchval("SELECT 1"))
        if len(rounds) == 1:
            await _lose(conn, database_url)
            await conn.execute("SELECT 2")
        if len(rounds) == 3:  # the second, done, has been logged
            again.set()

    await _run_until(database_url, "test-job", job, again)
    assert outage_lines(caplog) == [
        (f"test-job: {LOST}", False),
        ("test-job: database or file reachable again after N s (0 failure(s) not logged)",
         False)]
