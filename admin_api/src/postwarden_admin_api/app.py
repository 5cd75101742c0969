"""The application factory: settings in, a ready ``web.Application`` out.

The pool, the rate limiter, the runtime-settings cache and the retention job
start in cleanup contexts, in that order, and stop in reverse; the send API
and webhooks plug in with their own ``setup_*`` functions after them, so
their workers find the pool ready. A database whose schema is not this
code's stops the start-up there, before the site listens: never migrated
(:class:`~.schema.NotMigrated`), migrations pending (``SchemaTooOld``) or an
applied one that differs from this build's (``MigrationError``). Served, later
steps and routes would fail on a missing table or column, in errors that do
not say what to do. A database unreachable at start stops it too (the pool cannot
open), and one that refuses writes (:class:`postwarden_store.DatabaseReadOnly`: a standby, where
start-up's writes failed); systemd's ``Restart=on-failure`` tries again until it is
back, or promoted. Options of database_url the
client or server refuse (``DatabaseUrlRefused``: an unknown server setting, TLS the
server does not offer) stop it as invalid settings, which no retry mends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from postwarden_store import check_schema_current, connecting, create_pool

from . import (
    openapi,
    retention,
    routes_audit,
    routes_health,
    routes_keys,
    routes_policies,
    routes_policy_test,
    routes_rules,
    routes_settings,
)
from .context import POOL, SETTINGS
from .errors import COMMAND_TIMEOUT
from .gcpauses import gc_pauses
from .keys import warn_of_problems
from .metrics import METRICS, Metrics
from .middleware import (
    access,
    add_extra_headers,
    body_cap,
    defer_expectations,
    errors,
    request_context,
)
from .openapi import OPENAPI, OpenApiRegistry
from .periodic import pooled
from .ratelimit import LIMITER, RateLimiter
from .runtime_settings import RUNTIME, RuntimeSettingsCache
from .schema import require_schema, require_writable
from .secrets import KEYRING, Keyring
from .send import setup_send
from .settings import ServiceSettings
from .webhooks import setup_webhooks

ROUTE_MODULES = (
    routes_health,
    routes_keys,
    routes_policies,
    routes_policy_test,
    routes_rules,
    routes_audit,
    routes_settings,
    openapi,
)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    dsn = settings.database_url.reveal()
    with connecting(dsn):
        pool = await create_pool(
            dsn,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            command_timeout=COMMAND_TIMEOUT,
        )
    try:
        async with pooled(pool) as conn:
            await require_schema(conn)
            await check_schema_current(conn)
            await require_writable(conn)
            await warn_of_problems(conn)
        app[POOL] = pool
        app[LIMITER] = RateLimiter(pool)
        app[RUNTIME] = RuntimeSettingsCache(pool)
        yield
    finally:
        await pool.close()


def create_app(settings: ServiceSettings) -> web.Application:
    app = web.Application(
        middlewares=[request_context, errors, body_cap, access],
        client_max_size=settings.max_request_body_bytes,
    )
    app[SETTINGS] = settings
    app[KEYRING] = Keyring.from_settings(settings)
    app[METRICS] = Metrics()
    app.on_response_prepare.append(add_extra_headers)
    app.cleanup_ctx.append(gc_pauses)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(retention.retention_job)
    app[OPENAPI] = OpenApiRegistry()
    for module in ROUTE_MODULES:
        app.add_routes(module.routes)
        app[OPENAPI].add(module.OPENAPI_PATHS, getattr(module, "SCHEMAS", None))
    setup_send(app)
    setup_webhooks(app)
    defer_expectations(app)  # every route added: see .middleware
    return app
