"""Background loops of the service: no error, expected or not, ends one."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postwarden_admin_api.periodic import periodic
from postwarden_store import create_pool

pytestmark = pytest.mark.postgres


async def test_a_job_goes_on_after_an_outage_and_after_a_bug(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def job(conn: asyncpg.Connection) -> None:
        rounds.append(await conn.fetchval("SELECT $1::int", len(rounds)))
        if len(rounds) == 1:
            raise asyncpg.ConnectionDoesNotExistError("the database went away")
        if len(rounds) == 2:
            raise KeyError("a bug")
        third.set()

    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with periodic("test-job", pool, job, interval=0.01):
            async with asyncio.timeout(10):
                await third.wait()
    finally:
        await pool.close()
    assert rounds[:3] == [0, 1, 2]
    warnings = [r for r in caplog.records if r.name == "postwarden_admin_api.periodic"]
    assert [(r.levelname, r.getMessage(), r.exc_info is not None) for r in warnings[:2]] == [
        ("WARNING", "test-job: database or file unavailable "
                    "(ConnectionDoesNotExistError), trying again", False),
        ("ERROR", "test-job: unexpected error (KeyError), trying again", True),
    ]
