"""Retries as the docs promise them: an exponential backoff capped at
``backoff_cap_seconds``, however many attempts a delivery has had."""

from __future__ import annotations

import asyncpg
import pytest

from postwarden_admin_api.webhooks.options import WebhookOptions
from postwarden_admin_api.webhooks.worker import backoff_seconds

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls
from .support import (
    audit_event,
    first_failure,
    reject_hook,
    worker_options,
    write_audit,
)


@pytest.mark.parametrize("attempts", [10, 1025, 2**31 - 1])
def test_past_the_cap_the_backoff_is_the_capped_one(attempts: int) -> None:
    options = WebhookOptions()  # 10 s doubling: past the hour's cap from attempt 10
    cap = options.backoff_cap_seconds
    assert cap / 2 <= backoff_seconds(attempts, options) <= cap


@pytest.mark.postgres
async def test_a_long_retried_delivery_waits_the_capped_backoff(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    """webhook_max_attempts may be set to retry for weeks: past attempt 1024 the backoff's
    power of two overflowed a float, the failure was never recorded, and the delivery came
    back every lease (40 s) for good, never dead and showing its old last_error."""
    receiver.statuses = [500]
    await reject_hook(pool, "patient", hook_url(receiver))
    await write_audit(pool, audit_event("reject"))
    await pool.execute("UPDATE webhook_deliveries SET attempts = 1100")
    options = worker_options(tls, dns, max_attempts=5000, backoff_base_seconds=10.0,
                             backoff_cap_seconds=3600.0)
    row = await first_failure(pool, options)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1101, "HTTP 500")
    assert 1800 <= row["wait"] <= 3601
