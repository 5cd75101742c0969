"""The OpenAPI 3.1 document, assembled from what each route module declares.

Every route module calls ``app[OPENAPI].add(paths, schemas)`` (the core
modules do it through ``create_app``; the send and webhooks packages from
their ``setup_*`` functions). :func:`operation` builds one operation with the
roles it allows (``x-roles``), the API-key security requirement and the
shared error response. A test checks that documented and routed paths match
both ways and that ``x-roles`` equals each handler's ``allow``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from .context import REQUEST_ID_FORM, Role

Schema = dict[str, Any]

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


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


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
# errors.database_busy, which any authenticated request may meet (its key is looked up
# in the database); a 503 before the key is counted has no RateLimit-* headers.
_UNAVAILABLE: Schema = {
    "description": "see code (database_busy: every database connection is in use, "
                   "retry after Retry-After)",
    "headers": {
        "Retry-After": header("database_busy only: seconds to wait before trying again",
                              _SECONDS, required=False),
        **{name: {**spec, "required": False} for name, spec in RATE_LIMIT_HEADERS.items()},
        **EVERY_ANSWER,
    },
    "content": json_content(ref("Error")),
}


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
) -> Schema:
    """One operation; ``roles`` None marks a public route. A None schema: no body.
    ``descriptions``: a response's own description (else the summary, or for an
    error status "see code"). ``headers``: the headers (see :func:`header`) a response
    carries besides those every answer does (``EVERY_ANSWER``) and every authenticated
    one (``RATE_LIMIT_HEADERS``); the 429 and 503 of an authenticated route are
    declared here."""
    if set(headers or {}) - set(responses):
        raise ValueError(f"{summary}: headers of a response not declared")
    built: Schema = {"summary": summary, "responses": {}}
    common = {**EVERY_ANSWER, **({} if roles is None else RATE_LIMIT_HEADERS)}
    for status, schema in responses.items():
        default = summary if status < 300 else "see code"
        answer: Schema = {"description": (descriptions or {}).get(status, default)}
        if schema is not None:
            types = (response_type,) if isinstance(response_type, str) else response_type
            answer["content"] = {kind: {"schema": schema} for kind in types}
        answer["headers"] = {**common, **(headers or {}).get(status, {})}
        built["responses"][str(status)] = answer
    built["responses"]["default"] = {"description": "error", "headers": dict(EVERY_ANSWER),
                                     "content": json_content(ref("Error"))}
    if roles is None:
        built["security"] = []
    else:
        built["x-roles"] = sorted({Role.ADMIN, *roles})
        built["responses"]["429"] = copy.deepcopy(_TOO_MANY)
        built["responses"]["503"] = copy.deepcopy(_UNAVAILABLE)
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
