"""The send API: authenticated sending that relays through Postfix only for allowed senders.

``setup_send(app)`` adds the routes (``POST /api/v1/send-email``, messages,
suppressions) with their OpenAPI entries, and one cleanup context that runs
the relay worker, hourly housekeeping and, when ``maillog_path`` is set, the
maillog follower (and, when ``postfix_config_dir`` is set, the relay asks that
Postfix's queue about interrupted attempts qmgr has not logged: :mod:`.interrupted`).
It needs ``app[POOL]`` ready, so ``create_app`` calls it after the database
context.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from postwarden_admin_api.context import POOL, SETTINGS
from postwarden_admin_api.metrics import METRICS
from postwarden_admin_api.openapi import OPENAPI
from postwarden_admin_api.periodic import periodic, pooled
from postwarden_admin_api.secrets import KEYRING

from . import idempotency, limits
from .interrupted import PostfixQueue
from .maillog import MaillogFollower
from .openapi_paths import OPENAPI_PATHS, SCHEMAS
from .relay import RelayWorker
from .relayoutcomes import RelayConfig
from .routes import routes
from .sending import SEND, SendState, current_hash_key

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 3600.0
FOLLOWER_STOP_SECONDS = 10.0  # its last poll is bounded at 5 s
# After a relay stop that cut an attempt off: time for Postfix to log it before the
# follower's last read, which tells other hosts the log shows all it did.
LOG_SETTLE_SECONDS = 2.0


async def _housekeeping(conn: asyncpg.Connection) -> None:
    """Drop ended rate windows and expired idempotency records."""
    await limits.purge_windows(conn)
    await idempotency.purge(conn)


async def _send_workers(app: web.Application) -> AsyncIterator[None]:
    settings, pool = app[SETTINGS], app[POOL]
    async with pooled(pool) as conn:
        # Even while recipient_hash_key is set: clearing it then needs no query.
        stored = await limits.stored_hash_key(conn)
        # The server's (or the role's, the database's) own: a 202 is as durable as it says.
        if await conn.fetchval("SHOW synchronous_commit") == "off":
            log.warning("synchronous_commit is off: a message the send API accepts can be "
                        "lost, or sent twice, if PostgreSQL crashes; turn it on for the "
                        "service (ALTER ROLE ... SET synchronous_commit = on)")
    state = SendState(limits.HashKey(app[KEYRING], stored))
    app[SEND] = state
    await current_hash_key(app)  # reports an unreadable recipient_hash_key at start-up
    follower = None
    if settings.maillog_path is not None:
        follower = MaillogFollower(pool, settings.maillog_path, app[METRICS],
                                   settings.maillog_host, settings.maillog_syslog_name)
    if settings.relay_host:
        if follower is None:
            log.warning("relay_host is set without maillog_path: sent messages stay "
                        "'relayed' (nothing reads what Postfix did with them), and a relay "
                        "attempt cut off by a stop is sent again")
        queue = None
        if settings.postfix_config_dir is not None:
            queue = PostfixQueue(settings.postfix_config_dir)
        state.relay = RelayWorker(pool, RelayConfig(
            settings.relay_host, settings.relay_port, settings.relay_max_attempts,
            settings.relay_backoff_seconds, settings.relay_workers,
        ), follower, app[METRICS], queue)
        state.relay.start()
    following = None
    if follower is not None:
        following = asyncio.create_task(follower.run(), name="postwarden-maillog")
    try:
        async with periodic("send-housekeeping", pool, _housekeeping, HOUSEKEEPING_SECONDS,
                            metrics=app[METRICS]):
            yield
    finally:
        # The relay first: the follower answers its last questions about the log,
        # then reads the queue ids it stored.
        if state.relay is not None:
            await state.relay.stop()
        if follower is not None and following is not None:
            cut_off = state.relay is not None and state.relay.cut_off
            follower.stop(settle=LOG_SETTLE_SECONDS if cut_off else 0.0)
            try:
                await asyncio.wait_for(following, FOLLOWER_STOP_SECONDS)
            except TimeoutError:  # wait_for cancelled it: the lease lapses instead
                log.warning("maillog follower: not stopped within %.0f s",
                            FOLLOWER_STOP_SECONDS)


def setup_send(app: web.Application) -> None:
    """Add the send routes, the relay worker and the maillog follower to ``app``."""
    app.add_routes(routes)
    app[OPENAPI].add(OPENAPI_PATHS, SCHEMAS)
    app.cleanup_ctx.append(_send_workers)


__all__ = ["setup_send"]
