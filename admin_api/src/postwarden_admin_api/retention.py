"""Retention: a periodic job drops audit partitions older than ``audit_retention_days``.

Partitions are monthly, so a partition goes once its whole month is older
than the cutoff. What is dropped stays dropped: the round first records the
cutoff's month as the first one kept (``audit_retention.kept_from``), and no
audit write stores an event older than that (a milter replaying its spool
after a long outage counts such events as expired). Old rate-limit windows are
purged by the same job.

The cutoff is taken from the database's clock, never the admin host's: a host
clock a year ahead for one round (a bad RTC at boot, a bad NTP answer) would
drop every partition, and, ``kept_from`` only moving forward, have every
correct event refused as expired until real time caught up.

Dropping a partition (and making next month's) takes an ACCESS EXCLUSIVE lock
on ``audit_events``: it waits for every open reader, and while it waits every
milter write queues behind it. So each lock is waited for ``LOCK_TIMEOUT`` at
most; past that the round is undone and tried again ``LOCK_RETRY_SECONDS``
later. Admin instances sharing a database run the job at the same moments: an
advisory lock lets one of them work and the others skip the round (two at once
would drop the same partitions, and fail or deadlock).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from .context import POOL, SETTINGS
from .metrics import METRICS
from .periodic import Postponed, periodic
from .ratelimit import purge_counters
from .runtime_settings import load_runtime_settings

log = logging.getLogger(__name__)

LOCK_KEY = 0x7077726574656E74  # advisory lock key: the ASCII of "pwretent"
# What a milter write may wait behind a queued DROP: well within the writes' own
# lock_timeout (1 s, postwarden_store.audit), so they never give up for retention.
LOCK_TIMEOUT = "500ms"
LOCK_RETRY_SECONDS = 60.0

TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
SET_LOCK_TIMEOUT = f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
DROP_BEFORE = "SELECT audit_drop_partitions_before(now() - make_interval(days => $1))"
ENSURE_NEXT = "SELECT audit_ensure_partition(now() + interval '1 month')"


async def enforce_retention(conn: asyncpg.Connection) -> list[str]:
    """Drop expired partitions (and make next month's); returns the dropped names.

    Returns nothing dropped when another instance is running the job; raises
    :class:`Postponed`, having changed nothing, when a lock stayed taken past
    ``LOCK_TIMEOUT``.
    """
    days = (await load_runtime_settings(conn)).audit_retention_days
    async with conn.transaction():
        if not await conn.fetchval(TRY_LOCK, LOCK_KEY):
            log.info("retention: another instance is running it, round skipped")
            return []
        await conn.execute(SET_LOCK_TIMEOUT)
        try:
            dropped = [row[0] for row in await conn.fetch(DROP_BEFORE, days)]
            await conn.execute(ENSURE_NEXT)
        except asyncpg.LockNotAvailableError:
            raise Postponed(f"audit_events stayed locked for {LOCK_TIMEOUT} "
                            "(a long audit search, export page or stats query, or a "
                            "milter's audit write)") from None
    await purge_counters(conn, dt.timedelta(days=1))
    for name in dropped:
        log.info("retention: dropped audit partition %s (older than %s days)", name, days)
    return dropped


async def retention_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: enforce retention at start and every ``retention_interval_seconds``."""
    interval = app[SETTINGS].retention_interval_seconds
    async with periodic("retention", app[POOL], enforce_retention, interval,
                        metrics=app[METRICS], retry=LOCK_RETRY_SECONDS):
        yield
