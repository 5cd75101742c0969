"""Pruning the delivery history: old delivered and dead deliveries, then their events.

A delivery goes once it is delivered or dead and its last activity is older
than the cutoff; an event goes once it is older than the cutoff and no
delivery refers to it any more (a pending delivery or a replay keeps it).
The cutoff is taken from the database's clock, as retention's is: an admin host
whose clock ran a year ahead for one round pruned the whole history.
Deletes run in batches, each its own short transaction, so pruning a large
backlog never holds locks the delivery worker waits for.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from postwarden_admin_api.context import POOL
from postwarden_admin_api.metrics import METRICS
from postwarden_admin_api.periodic import periodic

from .options import WEBHOOK_OPTIONS

log = logging.getLogger(__name__)

BATCH = 5000
PRUNE_DELIVERIES = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status IN ('delivered', 'dead')
      AND coalesce(delivered_at, last_attempt_at, created_at) < now() - $1::interval
    ORDER BY id LIMIT $2)
"""
PRUNE_EVENTS = """
DELETE FROM webhook_events WHERE id IN (
    SELECT e.id FROM webhook_events e
    WHERE e.created_at < now() - $1::interval
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
    ORDER BY e.id LIMIT $2)
"""


async def _delete_in_batches(conn: asyncpg.Connection, query: str, older_than: dt.timedelta,
                             batch: int) -> int:
    total = 0
    while True:
        status: str = await conn.execute(query, older_than, batch)  # "DELETE <count>"
        count = int(status.rpartition(" ")[2])
        total += count
        if count < batch:
            return total


async def prune_webhook_history(
    conn: asyncpg.Connection, older_than: dt.timedelta, *, batch: int = BATCH
) -> int:
    """Delete finished deliveries and unreferenced events older than ``older_than``.

    Returns the number of rows deleted (deliveries and events).
    """
    deliveries = await _delete_in_batches(conn, PRUNE_DELIVERIES, older_than, batch)
    events = await _delete_in_batches(conn, PRUNE_EVENTS, older_than, batch)
    if deliveries or events:
        log.info("webhooks: pruned %s deliveries and %s events older than %s",
                 deliveries, events, older_than)
    return deliveries + events


async def pruning_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: prune the delivery history every ``prune_interval_seconds``."""
    options = app[WEBHOOK_OPTIONS]

    async def prune(conn: asyncpg.Connection) -> int:
        return await prune_webhook_history(conn, options.history_retention)

    async with periodic("webhook-pruning", app[POOL], prune, options.prune_interval_seconds,
                        metrics=app[METRICS]):
        yield
