"""A PostgreSQL outage is told in a few lines, not a flood: each background part of the
service (the relay workers together, the webhook worker, the runtime settings, the rate
limiter) says once that the database went away, with the reason, at most once a minute
while it stays away, with how many failures it did not log, and once that it is back.
The 8 relay workers each said a warning every second (the runtime settings and the rate
limiter theirs on every request, without the reason).

Postgres is stopped for real: a cluster of this test's own (see test_readyz_database_down)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from postwarden_admin_api.app import create_app
from postwarden_store import migrate_database
from tests.fixtures.adminapp import AiohttpClient, settings_for
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import PostgresCluster, running_cluster

pytestmark = pytest.mark.postgres

# Long enough for every relay worker to fail a few rounds (each polls every second).
OUTAGE_SECONDS = 5.0


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    with running_cluster() as cluster:
        asyncio.run(migrate_database(cluster.admin_dsn))
        yield cluster


def _lines(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and words in r.getMessage()]


async def test_an_outage_is_said_once_as_it_starts_and_once_as_it_ends(
    aiohttp_client: AiohttpClient, own_cluster: PostgresCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    settings = settings_for(own_cluster.admin_dsn, relay_host="127.0.0.1",
                            relay_port=free_port(), relay_workers=8)
    client = await aiohttp_client(create_app(settings))
    await asyncio.sleep(1.5)  # every worker claimed (nothing) at least once
    caplog.clear()

    await asyncio.to_thread(own_cluster.stop)
    deadline = time.monotonic() + OUTAGE_SECONDS
    while time.monotonic() < deadline:  # requests: the rate limiter and runtime settings
        await client.get("/api/v1/keys")
        await asyncio.sleep(0.25)
    await asyncio.to_thread(own_cluster.start)
    deadline = time.monotonic() + 15  # the pool connects again within seconds
    while len(_lines(caplog, "reachable again")) < 4 and time.monotonic() < deadline:
        await client.get("/api/v1/keys")
        await asyncio.sleep(0.25)
    await asyncio.sleep(2)  # every relay worker's round since ran on the database

    away = _lines(caplog, "unavailable")
    parts = [line.split(":")[0] for line in away]
    # One a part, none for each round or request that failed meanwhile.
    assert sorted(parts) == ["rate limiter (counting in process)", "relay worker",
                             "runtime settings (using the last known)",
                             "webhook worker"], away
    for line in away:  # with the reason: the server's word or the system's
        assert "Error" in line, line
    back = [line.split(":")[0] for line in _lines(caplog, "reachable again")]
    assert sorted(back) == sorted(parts), caplog.text
    # asyncpg's own, as the pool keeps retrying its floor: the reason, no traceback.
    floor = [r for r in caplog.records if r.name == "asyncpg.pool"]
    assert floor, caplog.text
    for record in floor:
        assert record.exc_info is None and "Error" in record.getMessage(), record.getMessage()
