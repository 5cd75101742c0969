"""Pruning old deliveries and events, on its own and as the service's periodic task."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import asyncpg
import pytest

from postwarden_admin_api.settings import ServiceSettings
from postwarden_admin_api.webhooks import (
    WebhookOptions,
    history,
    prune_webhook_history,
    raise_event,
)
from postwarden_store import connect
from tests.fixtures.clocks import HostClockAhead

from .conftest import Start
from .receiver import wait_for_async
from .support import add_endpoint

pytestmark = pytest.mark.postgres

AGE = """
UPDATE webhook_deliveries d
SET status = $3, created_at = now() - $4::interval, last_attempt_at = now() - $4::interval,
    delivered_at = CASE WHEN $3 = 'delivered' THEN now() - $4::interval END
FROM webhook_endpoints p
WHERE d.endpoint_id = p.id AND d.event_id = $1 AND p.name = $2
"""
AGE_EVENT = "UPDATE webhook_events SET created_at = now() - $2::interval WHERE id = $1"
OLD, RECENT = dt.timedelta(days=40), dt.timedelta(days=1)


async def _event(conn: asyncpg.Connection, age: dt.timedelta,
                 states: dict[str, tuple[str, dt.timedelta]]) -> int:
    """An event delivered to endpoints a and b, with the given ages and delivery states."""
    event_id = await raise_event(conn, "policy.load_failed", {"policy_name": "p", "error": "x"})
    assert event_id is not None
    await conn.execute(AGE_EVENT, event_id, age)
    for name, (status, delivery_age) in states.items():
        await conn.execute(AGE, event_id, name, status, delivery_age)
    return event_id


async def _remaining(conn: asyncpg.Connection) -> dict[int, list[str]]:
    rows = await conn.fetch(
        "SELECT e.id, coalesce(array_agg(p.name ORDER BY p.name)"
        " FILTER (WHERE p.name IS NOT NULL), '{}') AS names FROM webhook_events e"
        " LEFT JOIN webhook_deliveries d ON d.event_id = e.id"
        " LEFT JOIN webhook_endpoints p ON p.id = d.endpoint_id GROUP BY e.id")
    return {row["id"]: list(row["names"]) for row in rows}


async def test_prune_removes_finished_old_deliveries_and_unreferenced_events(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        for name in ("a", "b"):
            await add_endpoint(conn, name, f"https://{name}.example.com/in",
                               ["policy.load_failed"], None, kind="slack")
        gone = await _event(conn, OLD, {"a": ("delivered", OLD), "b": ("dead", OLD)})
        waiting = await _event(conn, OLD, {"a": ("dead", OLD), "b": ("pending", OLD)})
        recent = await _event(conn, RECENT, {"a": ("delivered", RECENT),
                                             "b": ("dead", RECENT)})
        retried = await _event(conn, OLD, {"a": ("delivered", RECENT), "b": ("dead", OLD)})
        also_gone = await _event(conn, OLD, {"a": ("dead", OLD), "b": ("delivered", OLD)})

        removed = await prune_webhook_history(conn, dt.timedelta(days=30), batch=2)

        assert removed == 6 + 2  # deliveries, then the events nothing refers to
        remaining = await _remaining(conn)
        assert gone not in remaining and also_gone not in remaining
        assert remaining == {waiting: ["b"], recent: ["a", "b"], retried: ["a"]}
        assert await prune_webhook_history(conn, dt.timedelta(days=30)) == 0


async def test_prune_goes_by_the_databases_clock_not_the_hosts(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host clock a year ahead for one round pruned every finished delivery.
    monkeypatch.setattr(history, "dt", HostClockAhead)
    async with pool.acquire() as conn:
        await add_endpoint(conn, "a", "https://a.example.com/in", ["policy.load_failed"], None,
                           kind="slack")
        kept = await _event(conn, RECENT, {"a": ("delivered", RECENT)})
        assert await prune_webhook_history(conn, dt.timedelta(days=30)) == 0
        assert await _remaining(conn) == {kept: ["a"]}


def test_options_from_settings(make_admin_settings: Callable[..., ServiceSettings]) -> None:
    options = WebhookOptions.from_settings(make_admin_settings(
        webhook_history_days=7, webhook_prune_interval_seconds=60))
    assert options.history_retention == dt.timedelta(days=7)
    assert options.prune_interval_seconds == 60.0
    defaults = WebhookOptions.from_settings(make_admin_settings())
    assert defaults.history_retention == dt.timedelta(days=30)


async def test_service_prunes_periodically(start: Start, database_url: str) -> None:
    conn = await connect(database_url)
    try:
        await add_endpoint(conn, "periodic", "https://p.example.com/in",
                           ["policy.load_failed"], None, kind="slack")
        await start(history_retention=dt.timedelta(days=30), prune_interval_seconds=0.05)
        # Made after the start-up pass: only a later, periodic pass can remove it. One
        # transaction, so the running worker never sees the delivery pending.
        async with conn.transaction():
            event_id = await _event(conn, OLD, {"periodic": ("delivered", OLD)})

        async def pruned() -> bool:
            left: int = await conn.fetchval(
                "SELECT count(*) FROM webhook_events WHERE id = $1", event_id)
            return left == 0

        assert await wait_for_async(pruned)
    finally:
        await conn.close()
