"""A receiver's ``Retry-After`` (a 429 of its rate limit, a 503 of a maintenance) is
honoured up to the backoff's cap: retried at the backoff alone, a delivery used up its
attempts within minutes of a receiver that asked for an hour, and was dead."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils

import asyncpg
import pytest

from postwarden_admin_api.webhooks.connector import retry_after_seconds
from postwarden_admin_api.webhooks.routes import deliveries_sql
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from tests.fixtures.adminapp import bearer

from .conftest import Start, StubDns, hook_url
from .receiver import Receiver, Tls, wait_for, wait_for_async
from .support import (
    add_endpoint,
    audit_event,
    first_failure,
    generate_secret,
    reject_hook,
    running_worker,
    worker_options,
    write_audit,
)

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), (" 0 ", 0.0), ("Sun, 06 Dec 2026 12:01:30 GMT", 90.0),
    ("Sun, 06 Dec 2026 11:00:00 GMT", 0.0),  # a date past: at once (the backoff then)
    (None, None), ("", None), ("-5", None), ("1.5", None), ("soon", None), ("²", None),
])
def test_retry_after_is_read_as_seconds_or_a_date(value: str | None, seconds: float | None
                                                   ) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def _in_seconds(seconds: int) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return email.utils.format_datetime(when, usegmt=True)


# The receiver's status and Retry-After, and the wait recorded (seconds, from..to).
Case = tuple[int, str | None, float, float]


@pytest.mark.postgres
@pytest.mark.parametrize("case", [
    (429, "30", 29, 31),
    (503, "date in 40 s", 37, 41),
    (503, "86400", 59, 61),  # a day asked: the cap (60 s here) is the longest wait
    (500, None, 0, 1),  # nothing asked: the backoff
])
async def test_a_failed_delivery_waits_as_long_as_the_receiver_asked(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns, case: Case,
) -> None:
    status, retry_after, low, high = case
    receiver.statuses = [status]
    receiver.retry_after = _in_seconds(40) if retry_after == "date in 40 s" else retry_after
    await reject_hook(pool, "limited", hook_url(receiver))
    await write_audit(pool, audit_event("reject"))
    options = worker_options(tls, dns, backoff_base_seconds=0.1, backoff_cap_seconds=60.0)
    row = await first_failure(pool, options)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, f"HTTP {status}")
    assert low <= row["wait"] <= high, row["wait"]


@pytest.mark.postgres
async def test_a_retry_after_holds_the_endpoints_other_deliveries(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
) -> None:
    """A receiver rate-limited with 429 and Retry-After: 30 got the endpoint's whole
    backlog at once all the same, each delivery spending an attempt on another 429 (a
    burst of rejects to a Slack channel, all of it dead in the end). They wait too, and
    so do events raised meanwhile, keeping their attempts; the deliveries' list says
    when they go."""
    receiver.statuses = [429]
    receiver.retry_after = "30"
    async with pool.acquire() as conn:
        endpoint = await add_endpoint(conn, "limited", hook_url(receiver),
                                      ["message.rejected"], generate_secret())
    await write_audit(pool, *(audit_event("reject") for _ in range(3)))
    # batch_size 4: one delivery of an endpoint in flight at a time
    options = worker_options(tls, dns, batch_size=4, backoff_cap_seconds=60.0)
    async with running_worker(pool, options):

        async def recorded() -> bool:
            return await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE last_error IS NOT NULL") > 0

        assert await wait_for_async(recorded)
        await write_audit(pool, audit_event("reject"))  # raised while the endpoint waits
        await asyncio.sleep(1.0)  # the others were due at once: time to send them
    assert len(receiver.requests) == 1
    sql, params = deliveries_sql(endpoint, None, None, 10)
    listed = await pool.fetch(sql, *params)
    now = await pool.fetchval("SELECT now()")
    assert [(d["status"], d["attempts"]) for d in reversed(listed)] == [
        ("pending", 1), ("pending", 0), ("pending", 0), ("pending", 0)]
    waits = [(d["next_attempt_at"] - now).total_seconds() for d in listed]
    assert all(25 <= wait <= 31 for wait in waits), waits


@pytest.mark.postgres
async def test_a_new_url_is_not_held_by_the_old_receivers_retry_after(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    """The hold is the old receiver's: after the URL is changed (the rate-limited receiver
    replaced), the new one waited up to an hour for nothing."""
    client = await start(backoff_cap_seconds=3600.0)
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "limited", "url": "https://hooks.example.com/old",
        "events": ["message.rejected"], "secret": generate_secret()})
    assert created.status == 201, await created.text()
    hook = f"/api/v1/webhooks/{(await created.json())['id']}"
    conn = await connect(database_url)
    try:
        await conn.execute("UPDATE webhook_endpoints SET held_until = now() + interval '1 hour'")
        await write_audit_batch(conn, [audit_event("reject")])
        changed = await client.patch(hook, headers=bearer(admin_key),
                                     json={"url": hook_url(receiver)})
        assert changed.status == 200, await changed.text()
        assert await conn.fetchval("SELECT held_until FROM webhook_endpoints") is None
    finally:
        await conn.close()
    assert await wait_for(lambda: len(receiver.delivered()) == 1)


@pytest.mark.postgres
async def test_a_retry_after_answered_after_the_url_changed_does_not_hold_the_new_one(
    database_url: str, start: Start, admin_key: str, receiver: Receiver, tls: Tls,
) -> None:
    """The old receiver's 429 came after the URL was set (its request was under way):
    recorded as the endpoint's hold all the same, it held the new receiver an hour."""
    old = Receiver("127.0.0.1", tls, statuses=[429], retry_after="3600", delay_seconds=1.0)
    await old.start()
    conn = await connect(database_url)
    try:
        await conn.execute("DELETE FROM webhook_endpoints")  # the module's earlier tests'
        client = await start(backoff_cap_seconds=3600.0)
        created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
            "name": "limited", "url": hook_url(old), "events": ["message.rejected"],
            "secret": generate_secret()})
        assert created.status == 201, await created.text()
        hook = f"/api/v1/webhooks/{(await created.json())['id']}"
        await write_audit_batch(conn, [audit_event("reject")])
        assert await wait_for(lambda: len(old.requests) == 1)  # under way
        changed = await client.patch(hook, headers=bearer(admin_key),
                                     json={"url": hook_url(receiver)})
        assert changed.status == 200, await changed.text()
        await asyncio.sleep(0.3)  # the old receiver's answer recorded
        assert await conn.fetchval("SELECT held_until FROM webhook_endpoints") is None
        await write_audit_batch(conn, [audit_event("reject")])
        assert await wait_for(lambda: len(receiver.delivered()) == 2, seconds=5.0)
    finally:
        await conn.close()
        await old.stop()
