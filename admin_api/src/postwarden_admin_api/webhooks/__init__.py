"""Webhooks: endpoints, signed deliveries and the SSRF guard.

``setup_webhooks(app)`` adds the ``/api/v1/webhooks`` routes, the delivery
worker and the periodic pruning of old deliveries. Events are raised by
database triggers (milter verdicts, policy activation, the send timeline) or
with :func:`raise_event` inside the caller's transaction.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from postwarden_admin_api import context as _context
from postwarden_admin_api import openapi as _openapi

from . import history, openapi, routes, worker
from .events import EventType, raise_event
from .history import prune_webhook_history
from .options import WEBHOOK_OPTIONS, WebhookOptions


def setup_webhooks(app: web.Application) -> None:
    """Add the webhook routes, the delivery worker and history pruning to ``app``.

    Call it after the pool's cleanup context is registered: both tasks need it.
    A test may replace ``app[WEBHOOK_OPTIONS]`` before the app starts.
    """
    app[WEBHOOK_OPTIONS] = WebhookOptions.from_settings(app[_context.SETTINGS])
    app[routes.POLICY_TURN] = asyncio.Lock()
    app.add_routes(routes.routes)
    app[_openapi.OPENAPI].add(openapi.OPENAPI_PATHS, openapi.SCHEMAS)
    app.cleanup_ctx.append(worker.worker_context)
    app.cleanup_ctx.append(history.pruning_context)


__all__ = [
    "WEBHOOK_OPTIONS", "EventType", "WebhookOptions", "prune_webhook_history", "raise_event",
    "setup_webhooks",
]
