"""The OpenAPI 3.1 document, assembled from what each route module declares.

Every route module calls ``app[OPENAPI].add(paths, schemas)`` (the core
modules do it through ``create_app``; the send and webhooks packages from
their ``setup_*`` functions). :func:`operation` builds one operation with the
roles it allows (``x-roles``), the API-key security requirement and the
shared error response; given the error codes its handler answers with, every
error status it may answer, each with its codes as an ``enum`` (the middleware
chain's, :data:`AUTHENTICATED_ERRORS`, too). A test checks that documented and
routed paths match both ways and that ``x-roles`` equals each handler's ``allow``.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from aiohttp import web

from .auth import unauthenticated
from .bodies import ACCEPTED_ENCODINGS
from .context import REQUEST_ID_FORM, Role
from .errors import ValidationFailed, database_busy, database_unavailable
from .middleware import HTTP_CODES

Schema = dict[str, Any]
ErrorCodes = Mapping[int, Collection[str]]  # status -> the codes an error with it may carry

ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}


def error_schema(codes: Collection[str]) -> Schema:
    """ERROR_SCHEMA, its code one of ``codes``."""
    schema = copy.deepcopy(ERROR_SCHEMA)
    schema["properties"]["error"]["properties"]["code"]["enum"] = sorted(codes)
    return schema


VALIDATION_FAILED = ValidationFailed([]).code
# What the middleware chain (middleware.py) may answer any authenticated route with,
# whatever its handler does. Codes written out here are raised as literals; a test
# checks each against the source.
AUTHENTICATED_ERRORS: ErrorCodes = {
    # A NUL in the path or query, a query not UTF-8, a malformed request, Authorization
    # given twice.
    400: [HTTP_CODES[400]],
    401: [unauthenticated().code],
    403: ["forbidden"],  # the key's role may not use the route
    413: [HTTP_CODES[413]],  # over max_request_body_bytes, whatever the route
    417: [HTTP_CODES[417]],  # an Expect header other than 100-continue
    422: [VALIDATION_FAILED],  # a query parameter given more than once
    429: ["rate_limited"],
    500: ["internal_error"],
    503: [database_busy().code, database_unavailable().code],
}
# What a route reading its body with bodies.read_json_object may answer besides.
JSON_BODY_ERRORS: ErrorCodes = {
    400: ["invalid_json"],
    408: ["request_timeout"],
    415: [HTTP_CODES[415]],
}


def error_codes(*tables: ErrorCodes) -> dict[int, list[str]]:
    """The union of ``tables``, by status."""
    merged: dict[int, set[str]] = {}
    for table in tables:
        for status, codes in table.items():
            merged.setdefault(status, set()).update(codes)
    return {status: sorted(codes) for status, codes in sorted(merged.items())}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


class PerType(dict[str, Schema]):
    """A response's schema per media type, for one whose types differ in shape (a
    source as YAML text, or as a JSON object holding it)."""


def _content(schema: Schema, types: tuple[str, ...]) -> Schema:
    if isinstance(schema, PerType):
        return {kind: {"schema": each} for kind, each in schema.items()}
    return {kind: {"schema": schema} for kind in types}


def param(name: str, where: str, schema: Schema, required: bool = False,
          description: str = "") -> Schema:
    found: Schema = {"name": name, "in": where, "schema": schema,
                     "required": required or where == "path"}
    if description:
        found["description"] = description
    return found


def header(description: str, schema: Schema, required: bool = True) -> Schema:
    """A response header (an OpenAPI Header Object)."""
    return {"description": description, "required": required, "schema": schema}


def _optional(headers: Mapping[str, Schema]) -> dict[str, Schema]:
    """``headers``, none of them required."""
    return {name: {**spec, "required": False} for name, spec in headers.items()}


_SECONDS = {"type": "integer", "minimum": 1}
# What the access middleware adds to every answer to a key it admitted (ratelimit.Quota).
RATE_LIMIT_HEADERS: Mapping[str, Schema] = {
    "RateLimit-Limit": header("requests_per_minute of the key (on a 429 for failed "
                              "authentications: the client address's quota of them)",
                              {"type": "integer"}),
    "RateLimit-Remaining": header("requests (failed authentications) left in this "
                                  "minute's window", {"type": "integer", "minimum": 0}),
    "RateLimit-Reset": header("seconds until this minute's window ends", _SECONDS),
}
# What middleware.request_context adds to every answer, public ones and errors too.
EVERY_ANSWER: Mapping[str, Schema] = {
    "X-Request-Id": header("the request's id, in the service's log lines: the X-Request-Id "
                           "sent, if 1 to 64 of [A-Za-z0-9._-], else a new one",
                           {"type": "string", "pattern": f"^{REQUEST_ID_FORM}$"}),
}
RETRY_AFTER = header("seconds to wait before trying again", _SECONDS)
_TOO_MANY: Schema = {
    "description": "a rate limit: see code (details[].kind names the limit; "
                   "recipient_rate_limited: details[].field each recipient at its limit)",
    "headers": {"Retry-After": RETRY_AFTER, **RATE_LIMIT_HEADERS, **EVERY_ANSWER},
    "content": json_content(ref("Error")),
}
# errors.database_busy and database_unavailable, which any authenticated request may meet
# (its key is looked up in the database); a 503 before the key is counted has no
# RateLimit-* headers.
_UNAVAILABLE: Schema = {
    "description": "see code (database_busy: every database connection is in use; "
                   "database_unavailable: the database cannot be reached; retry after "
                   "Retry-After)",
    "headers": {
        "Retry-After": header("database_busy and database_unavailable only: seconds to "
                              "wait before trying again", _SECONDS, required=False),
        **_optional(RATE_LIMIT_HEADERS),
        **EVERY_ANSWER,
    },
    "content": json_content(ref("Error")),
}


# bodies.check_encoding's: a 415 for a body in a Content-Encoding not decoded names those
# that are (RFC 9110 15.5.16); a 415 for its Content-Type has none.
_ENCODINGS_HEADERS: Mapping[int, Mapping[str, Schema]] = {415: {
    "Accept-Encoding": header("on a 415 for the body's Content-Encoding: the encodings "
                              "decoded", {"const": ACCEPTED_ENCODINGS}, required=False)}}
# Statuses the middleware chain may answer before the key is counted (errors, body_cap
# and access refuse first): such an answer carries no RateLimit-* headers.
_BEFORE_THE_KEY = frozenset({400, 401, 413, 422, 500})
# An authenticated route's 429 and 503, headers and all (their codes enumerated below).
_FIXED_ANSWERS: Mapping[int, Schema] = {429: _TOO_MANY, 503: _UNAVAILABLE}


def _middleware_headers(status: int) -> dict[str, Schema]:
    """Headers an authenticated route's answer with ``status`` may carry, or lack, when
    the middleware chain gives it (:data:`AUTHENTICATED_ERRORS`)."""
    if status == 401:
        return {**_optional(RATE_LIMIT_HEADERS), **{
            name: header("the scheme to authenticate with", {"type": "string"})
            for name in unauthenticated().headers}}
    return _optional(RATE_LIMIT_HEADERS) if status in _BEFORE_THE_KEY else {}


def operation(
    summary: str,
    roles: Iterable[Role] | None,
    *,
    responses: Mapping[int, Schema | None],
    body: Schema | None = None,
    parameters: list[Schema] | None = None,
    response_type: str | tuple[str, ...] = "application/json",
    descriptions: Mapping[int, str] | None = None,
    headers: Mapping[int, Mapping[str, Schema]] | None = None,
    errors: ErrorCodes | None = None,
) -> Schema:
    """One operation; ``roles`` None marks a public route. A None schema: no body.
    ``descriptions``: a response's own description (else the summary, or for an
    error status "see code"). ``headers``: the headers (see :func:`header`) a response
    carries besides those every answer does (``EVERY_ANSWER``) and every authenticated
    one (``RATE_LIMIT_HEADERS``); the 429 and 503 of an authenticated route are
    declared here. ``errors``: the error codes the handler itself answers with, by
    status; given, every error status the route may answer is declared, its codes
    (an authenticated route's :data:`AUTHENTICATED_ERRORS` too) an ``enum``."""
    enumerated = ({} if errors is None else
                  error_codes(errors, {} if roles is None else AUTHENTICATED_ERRORS))
    if set(headers or {}) - set(responses) - set(enumerated):
        raise ValueError(f"{summary}: headers of a response not declared")
    types = (response_type,) if isinstance(response_type, str) else response_type
    contents: dict[int, Schema | None] = {
        **{status: None if schema is None else _content(schema, types)
           for status, schema in responses.items()},
        **{status: json_content(error_schema(codes)) for status, codes in enumerated.items()},
    }
    built: Schema = {"summary": summary, "responses": {}}
    common = {**EVERY_ANSWER, **({} if roles is None else RATE_LIMIT_HEADERS)}
    for status, content in sorted(contents.items()):
        if roles is not None and status in _FIXED_ANSWERS:
            continue  # built from the fixed answer below
        default = summary if status < 300 else "see code"
        answer: Schema = {"description": (descriptions or {}).get(status, default)}
        if content is not None:
            answer["content"] = content
        answer["headers"] = {**common, **_ENCODINGS_HEADERS.get(status, {}),
                             **(headers or {}).get(status, {})}
        if roles is not None and status in enumerated:
            answer["headers"].update(_middleware_headers(status))
        built["responses"][str(status)] = answer
    if roles is None:
        built["security"] = []
    else:
        built["x-roles"] = sorted({Role.ADMIN, *roles})
        for status, fixed in _FIXED_ANSWERS.items():
            built["responses"][str(status)] = copy.deepcopy(fixed)
            if status in enumerated:
                built["responses"][str(status)]["content"] = contents[status]
    built["responses"]["default"] = {"description": "error", "headers": dict(EVERY_ANSWER),
                                     "content": json_content(ref("Error"))}
    if body is not None:
        built["requestBody"] = {"required": True, "content": body}
    if parameters:
        built["parameters"] = parameters
    return built


class OpenApiRegistry:
    def __init__(self) -> None:
        self.paths: dict[str, dict[str, Schema]] = {}
        self.schemas: dict[str, Schema] = {"Error": ERROR_SCHEMA}

    def add(self, paths: Mapping[str, Mapping[str, Schema]],
            schemas: Mapping[str, Schema] | None = None) -> None:
        for path, methods in paths.items():
            self.paths.setdefault(path, {}).update(methods)
        self.schemas.update(schemas or {})

    def document(self) -> Schema:
        return {
            "openapi": "3.1.0",
            "info": {"title": "postwarden admin API", "version": "1"},
            "paths": copy.deepcopy(self.paths),
            "components": {
                "schemas": copy.deepcopy(self.schemas),
                # The key as "Authorization: Bearer <key>", or as "X-Api-Key: <key>".
                "securitySchemes": {
                    "apiKey": {"type": "http", "scheme": "bearer"},
                    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                },
            },
            "security": [{"apiKey": []}, {"apiKeyHeader": []}],
        }


OPENAPI = web.AppKey("openapi", OpenApiRegistry)
routes = web.RouteTableDef()


@routes.get("/api/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI].document())


OPENAPI_PATHS = {
    "/api/v1/openapi.json": {
        "get": operation("this document", None, responses={200: {"type": "object"}}),
    },
}
