"""The worker's own waits for an endpoint's row (the delivery's start, the hold a
receiver's Retry-After asks, the disabling after a 410) may last row_wait_seconds
(webhook_timeout_seconds, here an hour, and 70 s): a database frozen meanwhile held the
delivery's slot and pooled connection for all of it, where a request waiting for the
same row was 503 within seconds (test_frozen_lock_wait). A probe on another pooled
connection now finds it silent: the delivery ends, its outage logged. The row is held
by a session the freeze does not reach, as a delete's would; a TCP relay on loopback
stands for the network (.dbrelay)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from postwarden_store import create_pool
from tests.admin_api.test_database_lost_mid_transaction import WAITING_FOR_A_LOCK
from tests.admin_api.test_worker_lost_connection import outage_lines
from tests.fixtures.dbrelay import relayed

from .conftest import hook_url
from .receiver import Receiver, Tls, wait_for, wait_for_async
from .support import raise_reject, reject_hook, running_worker, worker_options
from .test_settings_change_race import GatedDns, _under_way

pytestmark = pytest.mark.postgres

# As a delete or a change holds it (see sent_under_lock): the audit write that raises
# the delivery takes it all the same.
HOLD_ROW = "SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR NO KEY UPDATE"


@pytest.fixture
def dns() -> GatedDns:
    return GatedDns()


@contextlib.asynccontextmanager
async def _row_held(pool: asyncpg.Pool, endpoint_id: int) -> AsyncIterator[asyncpg.Connection]:
    """The endpoint's row held by a session of ``pool`` while the block runs."""
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(HOLD_ROW, endpoint_id)
        yield holder


@pytest.mark.parametrize(("statuses", "retry_after"), [
    pytest.param([], None, id="start"),
    pytest.param([429], "30", id="retry-after-hold"),
    pytest.param([410], None, id="disable-after-410"),
])
async def test_a_delivery_waiting_for_its_endpoints_row_ends_once_the_database_freezes(  # noqa: PLR0917
    pool: asyncpg.Pool, fresh_database_url: str, receiver: Receiver, tls: Tls, dns: GatedDns,
    caplog: pytest.LogCaptureFixture, statuses: list[int], retry_after: str | None,
) -> None:
    receiver.statuses, receiver.retry_after = statuses, retry_after
    endpoint_id = await reject_hook(pool, "frozen", hook_url(receiver))
    # One slot: no claim runs while the delivery waits, so an outage is the delivery's.
    options = worker_options(tls, dns, timeout_seconds=3600.0, batch_size=1)
    async with relayed(fresh_database_url) as (relay, through):
        worker_pool = await create_pool(through, max_size=3, command_timeout=1.0)
        try:
            async with running_worker(worker_pool, options):
                try:
                    if statuses:  # the row taken once the request is under way
                        await _under_way(dns, fresh_database_url, requests=1)
                    async with _row_held(pool, endpoint_id) as holder:
                        if statuses:
                            dns.gate.set()
                        else:  # before the delivery starts
                            await raise_reject(fresh_database_url)

                        async def waiting() -> bool:
                            return bool(await holder.fetch(WAITING_FOR_A_LOCK))

                        assert await wait_for_async(waiting)
                        relay.freeze()
                        # The test's own bound, far below row_wait_seconds.
                        assert await wait_for(lambda: outage_lines(caplog), seconds=30)
                finally:
                    relay.thaw()  # the row let go: a delivery still waiting ends
            [(line, traceback)] = outage_lines(caplog)[:1]
            assert line.startswith("webhook worker: database or file unavailable (TimeoutError")
            assert not traceback
        finally:
            await worker_pool.close()
