"""The send API: authenticated sending that relays through Postfix only for allowed senders.

``setup_send(app)`` adds the routes (``POST /api/v1/send-email``, messages,
suppressions) with their OpenAPI entries, and one cleanup context that runs
the relay worker, hourly housekeeping and, when ``maillog_path`` is set, the
maillog follower.
It needs ``app[POOL]`` ready, so ``create_app`` calls it after the database
context.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from postwarden_admin_api.context import POOL, SETTINGS
from postwarden_admin_api.openapi import OPENAPI

from . import idempotency, limits
from .maillog import MaillogFollower
from .openapi_paths import OPENAPI_PATHS, SCHEMAS
from .relay import RelayConfig, RelayWorker
from .routes import routes
from .sending import SEND, SendState, load_hash_key

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 3600.0


async def _housekeeping(pool: asyncpg.Pool) -> None:
    """Drop ended rate windows and expired idempotency records, hourly."""
    while True:
        try:
            async with pool.acquire() as conn:
                await limits.purge_windows(conn, dt.datetime.now(dt.UTC))
                await idempotency.purge(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("send housekeeping: database unreachable, next try in an hour")
        await asyncio.sleep(HOUSEKEEPING_SECONDS)


async def _send_workers(app: web.Application) -> AsyncIterator[None]:
    settings, pool = app[SETTINGS], app[POOL]
    async with pool.acquire() as conn:
        state = SendState(await load_hash_key(app, conn))
    app[SEND] = state
    if settings.relay_host:
        state.relay = RelayWorker(pool, RelayConfig(
            settings.relay_host, settings.relay_port, settings.relay_max_attempts,
            settings.relay_backoff_seconds,
        ))
        state.relay.start()
    tasks = [asyncio.create_task(_housekeeping(pool), name="postwarden-send-housekeeping")]
    if settings.maillog_path is not None:
        tasks.append(asyncio.create_task(
            MaillogFollower(pool, settings.maillog_path).run(), name="postwarden-maillog"
        ))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if state.relay is not None:
            await state.relay.stop()


def setup_send(app: web.Application) -> None:
    """Add the send routes, the relay worker and the maillog follower to ``app``."""
    app.add_routes(routes)
    app[OPENAPI].add(OPENAPI_PATHS, SCHEMAS)
    app.cleanup_ctx.append(_send_workers)


__all__ = ["setup_send"]
