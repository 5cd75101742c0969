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


@dataclass(frozen=True, slots=True)
class QueryParameters:
    """The query parameters a handler reads. ``listed``: the handler lists any other with
    the problems of its own (bodies.QueryProblems), in one 422."""

    names: tuple[str, ...] = ()
    listed: bool = False


def reads_query(*names: str, listed: bool = False) -> Callable[[H], H]:
    """Mark a handler with the query parameters it reads: any other is refused, 422
    naming it (middleware.access, before the handler runs; or, ``listed``, the handler).
    A handler marked with none takes none: a read's were dropped unread (``?limt=5``
    answered everything), a change's made without them."""

    def mark(handler: H) -> H:
        setattr(handler, QUERY_ATTRIBUTE, QueryParameters(names, listed))
        return handler

    return mark


def query_parameters(handler: Any) -> QueryParameters:
    declared: QueryParameters = getattr(handler, QUERY_ATTRIBUTE, QueryParameters())
    return declared


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
