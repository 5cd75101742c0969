"""An api_call whose filled template would pass MAX_BODY_BYTES can never be sent (the
event's data will not shrink): it is dead at its first attempt, with the reason as its
last error, logged once, and never retried. The endpoint's other deliveries go on."""

from __future__ import annotations

import dataclasses
import logging

import asyncpg
import pytest

from postwarden_admin_api.webhooks.payloads import MAX_BODY_BYTES

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for_async
from .support import add_endpoint, audit_event, running_worker, worker_options, write_audit

pytestmark = pytest.mark.postgres

# The recipients (about 24 KB for 1,000 of them) a hundred times: over 2 MB.
TEMPLATE = {"to": ["{{ data.recipients }}"] * 100}


async def test_an_oversize_body_is_dead_at_once(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with pool.acquire() as conn:
        endpoint_id = await add_endpoint(conn, "crm", hook_url(receiver), ["message.rejected"],
                                         None, kind="api_call")
        # As an object: the pool's jsonb codec encodes it (json.dumps made it a string)
        await conn.execute("UPDATE webhook_endpoints SET body_template = $1 WHERE id = $2",
                           TEMPLATE, endpoint_id)
    many = tuple(f"user{n}@example.net" for n in range(1000))
    await write_audit(pool, dataclasses.replace(audit_event("reject"), recipients=many),
                      audit_event("reject"))

    async def settled() -> bool:
        statuses = await pool.fetch("SELECT status FROM webhook_deliveries ORDER BY id")
        return [r["status"] for r in statuses] == ["dead", "delivered"]

    caplog.set_level(logging.INFO, "postwarden_admin_api.webhooks")
    async with running_worker(pool, worker_options(tls, dns, max_attempts=5)):
        assert await wait_for_async(settled)
    oversize = await pool.fetchrow("SELECT id, attempts, last_status_code, last_error"
                                   " FROM webhook_deliveries ORDER BY id LIMIT 1")
    assert (oversize["attempts"], oversize["last_status_code"]) == (1, None)
    assert oversize["last_error"] == (
        f"not sent, not retried: the body would be larger than {MAX_BODY_BYTES} bytes")
    [logged] = [r for r in caplog.records if f"delivery {oversize['id']} " in r.getMessage()]
    assert logged.levelno == logging.ERROR and "now dead" in logged.getMessage()
    assert len(receiver.requests) == 1  # only the other event's delivery
