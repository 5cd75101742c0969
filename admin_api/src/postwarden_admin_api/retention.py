"""Retention: a periodic job drops audit partitions older than ``audit_retention_days``.

Partitions are monthly, so a partition goes once its whole month is older
than the cutoff. Old rate-limit windows are purged by the same job.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from .context import POOL, SETTINGS
from .periodic import periodic
from .ratelimit import purge_counters
from .runtime_settings import load_runtime_settings

log = logging.getLogger(__name__)

DROP_BEFORE = "SELECT audit_drop_partitions_before($1)"
ENSURE_NEXT = "SELECT audit_ensure_partition(now() + interval '1 month')"


async def enforce_retention(conn: asyncpg.Connection, now: dt.datetime | None = None) -> list[str]:
    """Drop expired partitions (and make next month's); returns the dropped names."""
    days = (await load_runtime_settings(conn)).audit_retention_days
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    async with conn.transaction():
        dropped = [row[0] for row in await conn.fetch(DROP_BEFORE, cutoff)]
        await conn.execute(ENSURE_NEXT)
    await purge_counters(conn, dt.timedelta(days=1))
    for name in dropped:
        log.info("retention: dropped audit partition %s (older than %s days)", name, days)
    return dropped


async def retention_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: enforce retention at start and every ``retention_interval_seconds``."""
    interval = app[SETTINGS].retention_interval_seconds
    async with periodic("retention", app[POOL], enforce_retention, interval):
        yield
