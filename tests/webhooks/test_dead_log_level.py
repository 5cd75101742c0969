"""A delivery given up for good (dead after webhook_max_attempts) is an error in the log:
an admin who alerts on the service's errors learns that a receiver missed an event;
an attempt to be retried stays a warning."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for_async
from .support import (
    add_endpoint,
    audit_event,
    delivery_states,
    generate_secret,
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
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver), ["message.rejected"],
                           generate_secret())
    async with running_worker(pool, worker_options(tls, dns, max_attempts=2)):
        await write_audit(pool, audit_event("reject"))

        async def dead() -> bool:
            return [s["status"] for s in await delivery_states(pool)] == ["dead"]

        assert await wait_for_async(dead)
    failures = [(r.levelno, r.getMessage().rsplit(" ", 1)[1]) for r in caplog.records
                if "attempt" in r.getMessage() and "failed" in r.getMessage()]
    assert failures == [(logging.WARNING, "pending"), (logging.ERROR, "dead")]
