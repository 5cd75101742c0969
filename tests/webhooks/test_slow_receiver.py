"""A receiver that hangs until the timeout holds only its own deliveries.

The worker keeps up to ``batch_size`` deliveries in flight and claims more as
each ends, and holds at most ``endpoint_in_flight`` of one endpoint: the slow
endpoint's long queue cannot fill the window, and the fast endpoint's
deliveries, due after it, go out while the slow ones hang. Stopping waits for
those in flight and records them, so a restart does not send them again.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.webhooks import worker

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


async def test_a_claim_that_fills_fewer_slots_than_are_free_waits(
    pool: asyncpg.Pool, tls: Tls, dns: StubDns, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It took everything due: claiming again before a slot frees finds nothing new."""
    calls: list[tuple[int, int]] = []  # (free slots, claimed) of each claim
    deliver_due = worker.deliver_due

    async def counted(*args: Any, **kwargs: Any) -> int:
        free = args[-1].free()
        claimed: int = await deliver_due(*args, **kwargs)
        calls.append((free, claimed))
        return claimed

    monkeypatch.setattr(worker, "deliver_due", counted)
    slow = Receiver("127.0.0.1", tls, delay_seconds=1.0)
    await slow.start()
    try:
        async with pool.acquire() as conn:
            await add_endpoint(conn, "slow", hook_url(slow), ["message.rejected"],
                               generate_secret())
        await write_audit(pool, audit_event("reject"), audit_event("reject"))
        async with running_worker(pool, worker_options(tls, dns, poll_interval_seconds=30.0)):
            assert await wait_for(lambda: len(slow.requests) == 2, seconds=3.0)
            assert await wait_for(lambda: len(calls) >= 2, seconds=3.0)  # one slot freed
            first, second = calls[:2]
    finally:
        await slow.stop()
    assert first[1] == 2 and first[1] < first[0]
    assert second[0] > first[0] - first[1]  # only after a delivery ended
