"""Policy hot reload: file changes, refused bad sets, NOTIFY from the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.reload import LAST_GOOD_NAME, PolicyReloader
from postwarden_store import connect
from postwarden_store.policies import notify_policy_change
from tests.fixtures.postgres import wait_until

POLICY = "version: 1\nname: {name}\nlimits:\n  max_recipients: {limit}\n"


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    loop.start()
    yield loop
    loop.stop()


def _reloader(metrics: Metrics, loop: LoopThread, tmp_path: Path, *,
              policy_dir: Path | None = None, database_url: str | None = None) -> PolicyReloader:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    return PolicyReloader(metrics, spool_dir=spool, policy_dir=policy_dir,
                          database_url=database_url, poll_seconds=0.05, loop_thread=loop)


def _count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("postwarden_policy_reloads_total",
                                             {"result": result}) or 0.0


def test_file_change_reloads_and_a_bad_set_is_refused(
    tmp_path: Path, loop_thread: LoopThread
) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    policy = policy_dir / "main.yaml"
    policy.write_text(POLICY.format(name="main", limit=5))
    metrics = Metrics()
    reloader = _reloader(metrics, loop_thread, tmp_path, policy_dir=policy_dir)
    holder = reloader.load_initial()
    reloader.start()
    try:
        first = holder.current
        assert first.max_recipients == 5
        policy.write_text(POLICY.format(name="main", limit=7))
        assert wait_until(lambda: holder.current.max_recipients == 7, timeout=10)

        good = holder.current
        policy.write_text("version: 1\nname: main\nrules: [oops\n")
        assert wait_until(lambda: _count(metrics, "failed") == 1, timeout=10)
        assert holder.current is good  # the running set stays

        reloader.request()  # SIGHUP path: re-read even without a change
        assert wait_until(lambda: _count(metrics, "failed") == 2, timeout=10)
    finally:
        reloader.stop()
    assert _count(metrics, "ok") == 1


async def _activate(dsn: str, name: str, source: str) -> None:
    conn = await connect(dsn)
    try:
        revision = await conn.fetchval(
            "INSERT INTO policy_revisions (policy_name, content_hash, source) "
            "VALUES ($1, 'x', $2) RETURNING id", name, source)
        await conn.execute(
            "INSERT INTO active_policies (policy_name, revision_id) VALUES ($1, $2) "
            "ON CONFLICT (policy_name) DO UPDATE SET revision_id = excluded.revision_id",
            name, revision)
        await notify_policy_change(conn)
    finally:
        await conn.close()


@pytest.mark.postgres
def test_database_revisions_reload_on_notify_and_survive_an_outage(
    database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=2)))
    metrics = Metrics()
    reloader = _reloader(metrics, loop_thread, tmp_path, database_url=database_url)
    holder = reloader.load_initial()
    reloader.start()
    try:
        assert holder.current.max_recipients == 2
        asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=9)))
        assert wait_until(lambda: holder.current.max_recipients == 9, timeout=15)
    finally:
        reloader.stop()
    assert (tmp_path / "spool" / LAST_GOOD_NAME).exists()

    # Postgres unreachable at the next start: the last good set is used.
    unreachable = "postgresql://postgres@127.0.0.1:1/none"
    offline = _reloader(Metrics(), loop_thread, tmp_path, database_url=unreachable)
    assert offline.load_initial().current.max_recipients == 9
