"""A receiver that hangs until the timeout holds only its own deliveries.

The worker keeps up to ``batch_size`` deliveries in flight and claims more as
each ends, and holds at most ``endpoint_in_flight`` of one endpoint: the slow
endpoint's long queue cannot fill the window, and the fast endpoint's
deliveries, due after it, go out while the slow ones hang. Stopping waits for
those in flight and records them, so a restart does not send them again.
"""

from __future__ import annotations

import asyncpg
import pytest

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for
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

TIMEOUT = 3.0  # the slow receiver would answer after HANG: every attempt times out
HANG = 5.0


async def test_a_hanging_receiver_does_not_hold_the_others(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
) -> None:
    slow = Receiver("127.0.0.1", tls, delay_seconds=HANG)
    await slow.start()
    try:
        async with pool.acquire() as conn:
            await add_endpoint(conn, "slow", hook_url(slow), ["message.rejected"],
                               generate_secret())
            await add_endpoint(conn, "fast", hook_url(receiver), ["message.quarantined"],
                               generate_secret())
        # The slow endpoint's deliveries are due first, more than a window of them.
        await write_audit(pool, *(audit_event("reject") for _ in range(20)))
        await write_audit(pool, *(audit_event("quarantine") for _ in range(10)))
        options = worker_options(tls, dns, timeout_seconds=TIMEOUT, batch_size=8)
        async with running_worker(pool, options):
            # Well before the first slow attempt times out (a batch would wait for it).
            assert await wait_for(lambda: len(receiver.delivered()) == 10, seconds=2.0)
            assert len(slow.requests) <= options.endpoint_in_flight == 2
        slow_states = [s for s in await delivery_states(pool) if s["name"] == "slow"]
        tried = [s for s in slow_states if s["attempts"]]
        assert [(s["status"], s["attempts"]) for s in tried] == [("pending", 1)] * 2
        errors = await pool.fetch(
            "SELECT last_error FROM webhook_deliveries WHERE id = ANY($1::bigint[])",
            [s["id"] for s in tried])
        assert [e["last_error"] for e in errors] == ["timeout"] * 2  # finished and recorded
    finally:
        await slow.stop()
