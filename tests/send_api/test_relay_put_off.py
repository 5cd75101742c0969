"""Rows of an interrupted attempt put off while Postfix's log cannot tell yet are counted.

Without a count the relay waiting on the log (a backlogged qmgr, a follower
behind) was invisible to an operator: nothing was sent, nothing failed, the
outcome metric did not move. ``postwarden_relay_put_off_total`` counts each
put-off by reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.send import interrupted
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.relay import RelayWorker
from postwarden_admin_api.send.relayoutcomes import RelayConfig
from tests.fixtures.scripted_smtp import Scripted

from .test_maillog import append, follower_at_end, new_queue_id
from .test_receipts import cleanup, until
from .test_relay import database_url  # noqa: F401 - a fixture
from .test_review_log_lag import cut_off, due, log_file, put_off  # noqa: F401 - a fixture


def put_offs(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("postwarden_relay_put_off_total",
                                             {"reason": reason})


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


async def running(pool: asyncpg.Pool, port: int, follower: MaillogFollower,
                  metrics: Metrics) -> RelayWorker:
    worker = RelayWorker(pool, RelayConfig("127.0.0.1", port, 3, 0.05, workers=1), follower,
                         metrics)
    worker.start()
    return worker


@pytest.fixture
async def worker(pool: asyncpg.Pool, smtp_server: tuple[Scripted, int],
                 log_file: tuple[Path, MaillogFollower],  # noqa: F811 - the imported fixture
                 metrics: Metrics) -> AsyncIterator[RelayWorker]:
    worker = await running(pool, smtp_server[1], log_file[1], metrics)
    try:
        yield worker
    finally:
        await worker.stop(grace=10)


async def test_a_row_waiting_for_qmgr_is_counted(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int],
    log_file: tuple[Path, MaillogFollower],  # noqa: F811 - the imported fixture
    worker: RelayWorker, metrics: Metrics,
) -> None:
    server, (path, _) = smtp_server[0], log_file
    message = await cut_off(pool, "counted@example.org")
    append(path, cleanup(new_queue_id("LAG"), f"<{message.hex}@example.com>"))
    await until(pool, "SELECT EXISTS (SELECT FROM relay_receipts WHERE message_id = $1 "
                "AND NOT committed)", message)
    assert put_offs(metrics, "open_receipt") == 0
    await due(pool, worker, message)
    await put_off(pool, server, message, "counted@example.org")
    assert (put_offs(metrics, "open_receipt"), put_offs(metrics, "log_behind")) == (1.0, 0.0)


async def test_a_row_waiting_for_a_follower_behind_is_counted(
    pool: asyncpg.Pool, smtp_server: tuple[Scripted, int], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, metrics: Metrics,
) -> None:
    monkeypatch.setattr(interrupted, "LOG_WAIT_SECONDS", 0.2)
    server, port = smtp_server
    _, stalled = await follower_at_end(pool, tmp_path)  # never polls again: behind
    message = await cut_off(pool, "behind@example.org")
    worker = await running(pool, port, stalled, metrics)
    try:
        await due(pool, worker, message)
        await put_off(pool, server, message, "behind@example.org")
    finally:
        await worker.stop(grace=10)
    assert (put_offs(metrics, "log_behind"), put_offs(metrics, "open_receipt")) == (1.0, 0.0)
