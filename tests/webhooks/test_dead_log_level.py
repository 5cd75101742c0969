"""The log line of a failed delivery. One given up for good (dead after
webhook_max_attempts) is an error: an admin who alerts on the service's errors learns
that a receiver missed an event; an attempt to be retried stays a warning. An endpoint
deleted while one of its deliveries was being sent takes the delivery with it: the
failed attempt has nothing left to record, and the line said "now None"."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for, wait_for_async
from .support import (
    audit_event,
    delivery_states,
    reject_hook,
    running_worker,
    worker_options,
    write_audit,
)

pytestmark = pytest.mark.postgres


async def test_a_delivery_gone_dead_is_logged_as_an_error(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="postwarden_admin_api.webhooks")
    receiver.statuses = [500, 500]
    await reject_hook(pool, "ops", hook_url(receiver))
    async with running_worker(pool, worker_options(tls, dns, max_attempts=2)):
        await write_audit(pool, audit_event("reject"))

        async def dead() -> bool:
            return [s["status"] for s in await delivery_states(pool)] == ["dead"]

        assert await wait_for_async(dead)
    failures = [(r.levelno, r.getMessage().rsplit(" ", 1)[1]) for r in caplog.records
                if "attempt" in r.getMessage() and "failed" in r.getMessage()]
    assert failures == [(logging.WARNING, "pending"), (logging.ERROR, "dead")]


async def test_a_failure_of_a_deleted_endpoint_says_it_was_deleted(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="postwarden_admin_api.webhooks")
    receiver.statuses = [500]
    receiver.delay_seconds = 1.0
    endpoint = await reject_hook(pool, "gone", hook_url(receiver))
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
