"""Webhooks: endpoints, signed deliveries and the SSRF guard.

``setup_webhooks(app)`` adds the ``/api/v1/webhooks`` routes and the delivery
worker; :func:`raise_event` lets other parts of the service raise events
(policy activation, send status) inside their own transactions.
"""

from __future__ import annotations

from aiohttp import web

from postwarden_admin_api.context import SETTINGS
from postwarden_admin_api.openapi import OPENAPI

from . import openapi, routes
from .events import EventType, raise_event
from .options import WEBHOOK_OPTIONS, WebhookOptions
from .worker import worker_context


def setup_webhooks(app: web.Application) -> None:
    """Add the webhook routes and the delivery worker to ``app``.

    Call it after the pool's cleanup context is registered: the worker needs it.
    """
    app[WEBHOOK_OPTIONS] = WebhookOptions.from_settings(app[SETTINGS])
    app.add_routes(routes.routes)
    app[OPENAPI].add(openapi.OPENAPI_PATHS, openapi.SCHEMAS)
    app.cleanup_ctx.append(worker_context)


__all__ = ["WEBHOOK_OPTIONS", "EventType", "WebhookOptions", "raise_event", "setup_webhooks"]
