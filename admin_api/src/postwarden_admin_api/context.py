"""What every route module shares: app keys, the authenticated principal, roles.

Route modules (rules, policies, audit, settings, send, webhooks) declare the
roles they allow with :func:`allow`; the auth middleware authenticates the
request, puts the :class:`Principal` under ``request[PRINCIPAL]`` and refuses
roles not allowed. A handler without :func:`allow` and not in
``PUBLIC_PATHS`` is refused, so a forgotten decorator fails closed.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from .settings import ServiceSettings


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    SENDER = "sender"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    # The first key of its rotation line (its own id if it was rotated from none):
    # a sender key sees the messages every key of its line sent.
    owner: str
    name: str
    role: Role
    allowed_senders: tuple[str, ...] = ()  # exact addresses or "*@domain"; sender keys
    is_dev_fallback: bool = False


POOL = web.AppKey("pool", asyncpg.Pool)
SETTINGS = web.AppKey("settings", ServiceSettings)
# Routes that need no API key; everything else fails closed without `allow`.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"})
PRINCIPAL = web.RequestKey("principal", Principal)  # request storage of the Principal
# An X-Request-Id a client sends is kept when it is this (else the service makes one).
REQUEST_ID_FORM = "[A-Za-z0-9._-]{1,64}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
ROLES_ATTRIBUTE = "__postwarden_roles__"


def allow(*roles: Role) -> Callable[[H], H]:
    """Mark a handler with the roles that may call it (admin is always allowed)."""

    def mark(handler: H) -> H:
        setattr(handler, ROLES_ATTRIBUTE, frozenset({Role.ADMIN, *roles}))
        return handler

    return mark


def allowed_roles(handler: Any) -> frozenset[Role] | None:
    roles: frozenset[Role] | None = getattr(handler, ROLES_ATTRIBUTE, None)
    return roles


QUERY_ATTRIBUTE = "__postwarden_reads_query__"


def reads_query(handler: H) -> H:
    """Mark a change (POST, PUT, PATCH, DELETE) that reads query parameters of its own
    (each refuses those it does not know): any other change's are refused before it runs
    (middleware.access)."""
    setattr(handler, QUERY_ATTRIBUTE, True)
    return handler


def takes_query(method: str, handler: Any) -> bool:
    """Whether a request by ``method`` to ``handler`` may carry query parameters: a read
    (each reads its own), or a change marked :func:`reads_query`."""
    return method in ("GET", "HEAD", "OPTIONS") or getattr(handler, QUERY_ATTRIBUTE, False)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
