"""The middleware chain, outermost first.

request_context   X-Request-Id on every response, metrics
errors            ApiError and aiohttp's HTTP errors to JSON; anything else 500, no text
body_cap          max_request_body_bytes on the bytes actually read (chunked too)
access            authentication, key liveness, per-key and failed-auth rate limits, roles
                  (fail closed); only then ``Expect: 100-continue`` is answered

aiohttp answers ``Expect: 100-continue`` as soon as a route matches, before any
middleware runs: a client with no key would be invited to send its body.
:func:`defer_expectations` makes every route's expect handler only note the
header; :func:`access` meets it once the request is admitted, so every refusal
(401, 403, 413, 429) goes out without ``100 Continue`` and with ``Connection:
close``: a client not invited to send its body may not send it, and what it sends
next could not be told from a body. (A path or method no route takes is aiohttp's
own 404 or 405, whose expect handler this cannot reach.)
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from .auth import (
    address_group,
    authenticate,
    client_address,
    forget_presented_key,
    is_remembered,
    unauthenticated,
)
from .bodies import given_twice, no_parameters, unknown_parameters
from .context import (
    PRINCIPAL,
    PUBLIC_PATHS,
    REQUEST_ID_FORM,
    SETTINGS,
    allowed_roles,
    query_parameters,
)
from .errors import (
    COMMAND_TIMEOUT,
    DATABASE_AWAY,
    ApiError,
    ClientGone,
    ValidationFailed,
    database_unavailable,
)
from .httpserver import log_unparsable, undecodable, unparsable
from .metrics import METRICS
from .ratelimit import LIMITER, Quota
from .runtime_settings import RUNTIME
from .secrets import NoSecretKey

log = logging.getLogger(__name__)

REQUEST_ID = web.RequestKey("request_id", str)
# Headers for whatever response goes out: a dict shared by the request and its
# clones (body_cap clones the request), applied in on_response_prepare.
EXTRA_HEADERS = web.RequestKey("extra_headers", dict[str, str])
_CLIENT_REQUEST_ID = re.compile(rf"^{REQUEST_ID_FORM}\Z")
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    417: "expectation_failed",
}
HTTP_FALLBACK_CODE = "http_error"  # any other error status aiohttp raises
# nginx's status for a request its client gave up on: never sent, it is what the
# request metrics count.
CLIENT_CLOSED_REQUEST = 499


ExpectHandler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse | None]]


class Expectation:
    """A request's ``Expect`` header, noted before the middlewares run, met by :func:`access`."""

    def __init__(self, meet: ExpectHandler) -> None:
        self._meet = meet  # the route's own: aiohttp's sends 100 Continue, or raises 417
        self.met = False

    async def meet(self, request: web.Request) -> web.StreamResponse | None:
        answer = await self._meet(request)
        await request.writer.drain()
        self.met = True
        return answer


# An object shared by the request and its clones (body_cap clones the request).
EXPECTATION = web.RequestKey("expectation", Expectation)


def defer_expectations(app: web.Application) -> None:
    """Make each route of ``app`` note an ``Expect`` header for :func:`access` rather
    than answer it. aiohttp has no setter for a route's expect handler (``_expect_handler``
    is internal); ``tests/admin_api/test_expect_continue.py`` fails if that changes."""
    for route in app.router.routes():
        route._expect_handler = _noting(route._expect_handler)


def _noting(meet: ExpectHandler) -> ExpectHandler:
    async def note(request: web.Request) -> None:
        request[EXPECTATION] = Expectation(meet)

    return note


# The methods a route may take; any other (a parser lets dozens through: PROPFIND,
# PURGE, ...) counts as "other", so that a client cannot mint series by the method.
_COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method_label(request: web.Request) -> str:
    return request.method if request.method in _COUNTED_METHODS else "other"


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    request[EXTRA_HEADERS] = {"X-Request-Id": request_id}
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        route = _route_label(request)
        metrics.requests.labels(_method_label(request), route, str(status)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)


async def add_extra_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: request id and rate-limit headers, streaming responses too."""
    for name, value in request.get(EXTRA_HEADERS, {}).items():
        response.headers.setdefault(name, value)


def _error_response(request: web.Request, error: ApiError) -> web.Response:
    response = web.json_response(error.body(), status=error.status, headers=error.headers)
    expectation: Expectation | None = request.get(EXPECTATION)
    if expectation is not None and not expectation.met:
        response.force_close()  # see the module docstring
    return response


def _stream_broken(request: web.Request, error: ApiError) -> web.Response:
    """The answer to a request whose body broke off: the connection closes after it, as
    nothing further on it can be read (a request sent next went unanswered)."""
    response = _error_response(request, error)
    response.force_close()
    return response


def _query_not_utf8(request: web.Request) -> bool:
    """Whether the query's %-escapes spell bytes that are no UTF-8: aiohttp reads them
    as U+FFFD, and a Latin-1 ``sender=j%F6rg`` searched for another sender, its empty
    answer passing for "no such mail"."""
    raw = request.rel_url.raw_query_string
    if "%" not in raw:  # every request asks: most have no escape, or no query at all
        return False
    try:
        urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if "\x00" in request.path or any("\x00" in k + v for k, v in request.query.items()):
            # No route takes one, and Postgres refuses it in any text.
            raise ApiError(400, "bad_request", "a NUL character in the path or query")
        if _query_not_utf8(request):
            raise ApiError(400, "bad_request", "a %-escape in the query that is not UTF-8")
        # The public routes read no parameter: a probe's or a scrape config's (Prometheus
        # params: module=a&module=b) is ignored, as any other there (docs/api.md).
        if not _is_public(request) and (repeated := given_twice(request.query.items())):
            raise ValidationFailed(repeated)
        return await handler(request)
    except ApiError as error:
        return _error_response(request, error)
    except ClientGone:
        log.info("the client left while %s %s ran: its query was cancelled",
                 request.method, _route_label(request))
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    except DATABASE_AWAY as exc:  # lost mid-request (acquire tells a refused connection)
        log.warning("database unreachable answering %s %s: %s", request.method,
                    _route_label(request), type(exc).__name__)
        return _error_response(request, database_unavailable())
    except TimeoutError:  # a statement's COMMAND_TIMEOUT: the database went silent
        log.warning("database unreachable answering %s %s: no answer within %g s",
                    request.method, _route_label(request), COMMAND_TIMEOUT)
        return _error_response(request, database_unavailable())
    except NoSecretKey:
        return _error_response(request, ApiError(
            503, "secret_key_not_configured",
            "no secret key is configured, so secret values cannot be stored",
        ))
    except HttpProcessingError as exc:  # a malformed body part met while reading
        log_unparsable(request, exc)
        return _stream_broken(request, unparsable(exc))
    except RequestPayloadError:
        # aiohttp's wrapping of a body that does not decode as its Content-Encoding
        # says (gzip that is not): the client's fault, not an internal error. The parser
        # reads no more of it; aiohttp, lingering over the rest, would meet the fault
        # again and log it as an unhandled exception.
        request.content.feed_eof()
        return _stream_broken(request, undecodable())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, HTTP_FALLBACK_CODE)
        message = HTTPStatus(exc.status).phrase.lower()
        # A 405 must say which methods the route takes (RFC 9110, 15.5.6).
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error_response(request, ApiError(exc.status, code, message, headers=headers))
    except Exception:
        log.exception("unhandled error answering %s %s (request %s)",
                      request.method, _route_label(request), request.get(REQUEST_ID))
        return _error_response(request, ApiError(500, "internal_error", "internal error"))


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body exceeds {limit} bytes",
                    details=[{"limit": limit}])


@web.middleware
async def body_cap(request: web.Request, handler: Handler) -> web.StreamResponse:
    runtime = await request.app[RUNTIME].get()
    limit = min(request.app[SETTINGS].max_request_body_bytes, runtime.max_request_body_bytes)
    if request.content_length is not None and request.content_length > limit:
        raise payload_too_large(limit)
    try:
        return await handler(request.clone(client_max_size=limit))
    except web.HTTPRequestEntityTooLarge as exc:
        raise payload_too_large(limit) from exc


def _rate_limited(quota: Quota, kind: str) -> ApiError:
    return ApiError(429, "rate_limited", "too many requests, retry later",
                    details=[{"limit": quota.limit, "kind": kind}], headers=quota.headers())


def _is_public(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    # A wrong method on a public path matches no resource; its 405 needs no key either.
    path = request.path if resource is None else resource.canonical
    return path in PUBLIC_PATHS


def _auth_guard(client: str) -> str:
    """The rate limiter's bucket of a client's (address_group) failed authentications."""
    return f"auth-failures:{client}"


async def _failed_auth(request: web.Request, error: ApiError, client: str) -> ApiError:
    """Count a failed authentication against the client address: 429 once it is blocked."""
    app = request.app
    limiter, settings, metrics = app[LIMITER], app[SETTINGS], app[METRICS]
    metrics.auth_failures.inc()
    limit = settings.auth_failures_per_minute
    blocked_before = limiter.remembered_full(_auth_guard(client), limit) is not None
    failures = await limiter.hit(_auth_guard(client), limit)
    if not failures.allowed:
        metrics.rate_limited.labels("auth_failures").inc()
        if not blocked_before:  # once a minute: its later guesses are refused uncounted
            log.warning("client %s blocked until the minute ends: %d failed "
                        "authentications in it", client, limit)
        return _rate_limited(failures, "auth_failures")
    return error


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One database statement per request with a remembered key (see :mod:`.auth`):
    the key's liveness and the key's count. A blocked client address (failed
    authentications) gets 429 for any key but a remembered one.

    Every authenticated request counts against its key's limit, refused ones
    (403, 404, 405) included. An ``Expect`` header is met only once the request is
    admitted (see the module docstring).
    """
    if _is_public(request):
        return await _admitted(request, handler)
    app = request.app
    limiter, settings, metrics = app[LIMITER], app[SETTINGS], app[METRICS]
    client = address_group(client_address(request))
    blocked = limiter.remembered_full(_auth_guard(client), settings.auth_failures_per_minute)
    if blocked is not None and not is_remembered(request):
        metrics.rate_limited.labels("auth_failures").inc()
        raise _rate_limited(blocked, "auth_failures")
    try:
        principal = await authenticate(request)
    except ApiError as error:
        if error.status != 401:  # the database's trouble (503), not a wrong key
            raise
        raise await _failed_auth(request, error, client) from None
    admission = await limiter.admit(
        None if principal.is_dev_fallback else principal.key_id,
        f"key:{principal.key_id}", settings.requests_per_minute,
    )
    if not admission.live:
        forget_presented_key(request)
        raise await _failed_auth(request, unauthenticated(), client)
    request[PRINCIPAL] = principal
    quota = admission.quota
    if not quota.allowed:
        metrics.rate_limited.labels("key").inc()
        raise _rate_limited(quota, "key")
    # On every answer to the key from here on, refusals (403, 404, 405) included:
    # they were counted too.
    request[EXTRA_HEADERS].update(quota.headers())
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    roles = allowed_roles(request.match_info.handler)
    if roles is None:
        log.error("route %s names no roles: refused", _route_label(request))
        raise ApiError(403, "forbidden", "this key may not use this route")
    if principal.role not in roles:
        raise ApiError(403, "forbidden", "this key may not use this route")
    if request.query:
        _refuse_unread_parameters(request)
    return await _admitted(request, handler)


def _refuse_unread_parameters(request: web.Request) -> None:
    """422 naming each query parameter the route does not read (context.reads_query),
    but where the handler lists them with its own problems."""
    declared = query_parameters(request.match_info.handler)
    if declared.listed:
        return
    if not declared.names and request.method not in ("GET", "HEAD"):
        raise no_parameters(request)
    if unread := unknown_parameters(request.query, declared.names):
        raise ValidationFailed(unread)


async def _admitted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, the request's ``Expect`` header met first."""
    expectation: Expectation | None = request.get(EXPECTATION)
    if expectation is not None:
        answer = await expectation.meet(request)
        if answer is not None:
            return answer
    return await handler(request)
