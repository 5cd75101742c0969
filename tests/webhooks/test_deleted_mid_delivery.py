"""An endpoint deleted while one of its deliveries was being sent takes the delivery with
it: the failed attempt has nothing left to record, and the log said "now None"."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for
from .support import (
    add_endpoint,
    audit_event,
    generate_secret,
    running_worker,
    worker_options,
    write_audit,
)

pytestmark = pytest.mark.postgres


async def test_a_failure_of_a_deleted_endpoint_says_it_was_deleted(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="postwarden_admin_api.webhooks")
    receiver.statuses = [500]
    receiver.delay_seconds = 1.0
    async with pool.acquire() as conn:
        endpoint = await add_endpoint(conn, "gone", hook_url(receiver), ["message.rejected"],
                                      generate_secret())
    await write_audit(pool, audit_event("reject"))
    async with running_worker(pool, worker_options(tls, dns)):
        assert await wait_for(lambda: len(receiver.requests) == 1)
        await pool.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint)

        def logged() -> bool:
            return any("failed" in r.getMessage() for r in caplog.records)

        assert await wait_for(logged)
    [line] = [r for r in caplog.records if "failed" in r.getMessage()]
    assert "None" not in line.getMessage()
    assert line.getMessage().endswith("(HTTP 500); the endpoint was deleted meanwhile")
    assert line.levelno == logging.WARNING
