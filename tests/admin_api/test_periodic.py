"""Background loops of the service: no error, expected or not, ends one."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import periodic
from postwarden_store import create_pool

pytestmark = pytest.mark.postgres


async def _run_until(database_url: str, name: str,
                     job: Callable[[asyncpg.Connection], Awaitable[None]],
                     reached: asyncio.Event) -> Metrics:
    """Run ``job`` as a periodic job every 10 ms until ``reached`` is set; its metrics."""
    metrics = Metrics()
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with periodic(name, pool, job, 0.01, metrics=metrics):
            async with asyncio.timeout(10):
                await reached.wait()
    finally:
        await pool.close()
    return metrics

async def test_a_job_goes_on_after_an_outage_and_after_a_bug(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rounds: list[int] = []
    counted = asyncio.Event()

    async def job(conn: asyncpg.Connection) -> None:
        rounds.append(await conn.fetchval("SELECT $1::int", len(rounds)))
        if len(rounds) == 1:
            raise asyncpg.ConnectionDoesNotExistError("the database went away")
        if len(rounds) == 2:
            raise KeyError("a bug")
        if len(rounds) == 4:  # the third round has been counted
            counted.set()

    metrics = await _run_until(database_url, "test-job", job, counted)
    assert rounds[:3] == [0, 1, 2]
    warnings = [r for r in caplog.records if r.name in (
        "postwarden_admin_api.periodic", "postwarden_admin_api.outages")]
    said = [(r.levelname, re.sub(r"after \d+ s", "after N s", r.getMessage()),
             r.exc_info is not None) for r in warnings[:3]]
    assert said == [
        ("WARNING", "test-job: database or file unavailable "
                    "(ConnectionDoesNotExistError: the database went away); said again at "
                    "most once a minute until it is back", False),
        ("ERROR", "test-job: unexpected error (KeyError), trying again", True),
        ("WARNING", "test-job: database or file reachable again after N s "
                    "(0 failure(s) not logged)", False),
    ]

    def rounds_counted(outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "postwarden_job_rounds_total", {"job": "test-job", "outcome": outcome})

    assert rounds_counted("failed") == 2
    assert (rounds_counted("done") or 0) >= 1
    assert rounds_counted("postponed") == 0  # there from the start: increase() sees a first
    assert (metrics.registry.get_sample_value(
        "postwarden_job_last_done_timestamp_seconds", {"job": "test-job"}) or 0) > 0


async def test_a_jobs_rounds_are_exposed_at_0_before_any_ends(database_url: str) -> None:
    """A series that appears with its first event at 1 shows no increase to increase():
    an alert on a failed retention round missed the first."""
    started = asyncio.Event()

    async def job(conn: asyncpg.Connection) -> None:
        started.set()

    metrics = await _run_until(database_url, "new-job", job, started)
    assert metrics.registry.get_sample_value(
        "postwarden_job_rounds_total", {"job": "new-job", "outcome": "failed"}) == 0


async def test_a_job_that_never_finishes_a_round_still_ages(database_url: str) -> None:
    """The alert on the last round done must fire for a job broken since the start too:
    the gauge holds the start time until a round is done."""
    failed = asyncio.Event()

    async def job(conn: asyncpg.Connection) -> None:
        failed.set()
        raise asyncpg.ConnectionDoesNotExistError("the database went away")

    metrics = await _run_until(database_url, "broken-job", job, failed)
    since = metrics.registry.get_sample_value(
        "postwarden_job_last_done_timestamp_seconds", {"job": "broken-job"})
    assert since is not None and time.time() - 60 < since <= time.time()
