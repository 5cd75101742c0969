"""An event raised while its endpoint is being deleted is no error for the writer.

``webhook_raise`` runs inside the milter's audit COPY and the send path's
timeline inserts: a foreign-key error there would fail the audit batch (or the
send) because an admin deleted an endpoint at that moment.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postwarden_store import connect
from tests.webhooks.support import add_endpoint

pytestmark = pytest.mark.postgres

RAISE = "SELECT webhook_raise('message.rejected', '{}'::jsonb)"


async def _waits_for_a_lock(conn: asyncpg.Connection, pid: int) -> bool:
    return bool(await conn.fetchval(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid))


async def test_an_endpoint_deleted_while_its_event_is_raised_gets_no_delivery(
    fresh_database_url: str,
) -> None:
    raiser = await connect(fresh_database_url)
    deleter = await connect(fresh_database_url)
    try:
        endpoint = await add_endpoint(raiser, "gone", "https://hooks.example.com/x",
                                      ["message.rejected"], "whsec_x")
        deleting = deleter.transaction()
        await deleting.start()
        await deleter.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint)
        # The raiser still sees the endpoint (the delete is not committed) and waits
        # for its row: then the delete commits under it.
        raising = asyncio.create_task(raiser.fetchval(RAISE))
        pid = raiser.get_server_pid()
        for _ in range(750):  # 15 s
            if await _waits_for_a_lock(deleter, pid):
                break
            await asyncio.sleep(0.02)
        else:
            raise TimeoutError("the raiser never waited for the endpoint's row")
        await deleting.commit()
        async with asyncio.timeout(15):
            await raising  # no ForeignKeyViolationError
        assert await raiser.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", endpoint) == 0
    finally:
        await raiser.close()
        await deleter.close()
