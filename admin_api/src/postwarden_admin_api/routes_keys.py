"""API key management for admins: create, list, revoke, rotate."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from aiohttp import web

from . import admin_audit
from .bodies import json_ok, read_json_object, unknown_fields
from .context import POOL, Role, allow, principal
from .errors import ApiError, ValidationFailed, connection
from .keys import (
    DEFAULT_GRACE_SECONDS,
    MAX_GRACE_SECONDS,
    NAME_MAX,
    AlreadyRotated,
    KeyInfo,
    allowed_sender,
    check_role_senders,
    create_key,
    get_key,
    key_expiry,
    key_name,
    list_keys,
    named_key_id,
    refuse_past_expiry,
    revoke_key,
    rotate_key,
    why_not_revoked,
)
from .openapi import (
    JSON_BODY_ERRORS,
    VALIDATION_FAILED,
    error_codes,
    json_content,
    operation,
    param,
    ref,
)

routes = web.RouteTableDef()
GRACE = "grace_seconds"


def _shown(info: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": info.key_id, "name": info.name, "role": info.role.value,
        "allowed_senders": list(info.allowed_senders), "created_at": info.created_at,
        "created_by": info.created_by, "expires_at": info.expires_at,
        "revoked_at": info.revoked_at, "rotated_to": info.rotated_to,
        "last_used_at": info.last_used_at, "owner": info.owner, "problems": info.problems,
    }


def _allowed_senders(listed: object, role: Role | None
                     ) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    """A new key's allowed senders, and every problem with them: an entry refused named
    by its place, with why ("expected a list of addresses" for ["app@example.com",
    "*@localhost"] left the admin to guess which entry, and what is wrong with it); the
    list, once its entries are good, checked against the role when that is one."""
    if not isinstance(listed, list):
        return (), [{"field": "allowed_senders", "message": "expected a list of addresses"}]
    senders: list[str] = []
    problems: list[dict[str, str]] = []
    for place, given in enumerate(listed):
        try:
            senders.append(allowed_sender(given))
        except ValueError as exc:
            problems.append({"field": f"allowed_senders[{place}]", "message": str(exc)})
    if role is not None and not problems:
        try:
            check_role_senders(role, tuple(senders))
        except ValueError as exc:
            problems.append({"field": "allowed_senders", "message": str(exc)})
    return tuple(senders), problems


def _parse_create(data: dict[str, Any]) -> tuple[Role, str, tuple[str, ...], dt.datetime | None]:
    problems: list[dict[str, Any]] = []
    given = data.get("role")
    role = Role(given) if isinstance(given, str) and given in {r.value for r in Role} else None
    if role is None:
        problems.append({"field": "role", "message": "expected admin, operator, auditor or sender"})
    name = ""
    try:
        name = key_name(data.get("name"))
    except ValueError as exc:
        problems.append({"field": "name", "message": str(exc)})
    senders, sender_problems = _allowed_senders(data.get("allowed_senders", []), role)
    problems += sender_problems
    expires_at: dt.datetime | None = None
    raw_expiry = data.get("expires_at")
    if raw_expiry is not None:
        try:
            expires_at = key_expiry(raw_expiry)
        except ValueError as exc:
            problems.append({"field": "expires_at", "message": str(exc)})
    problems += unknown_fields(data, {"role", "name", "allowed_senders", "expires_at"})
    if problems or role is None:
        raise ValidationFailed(problems)
    return role, name, senders, expires_at


@routes.get("/api/v1/keys")
@allow()
async def keys_list(request: web.Request) -> web.Response:
    async with connection(request.app[POOL]) as conn:
        keys = await list_keys(conn)
    return json_ok({"keys": [_shown(k) for k in keys]})


@routes.post("/api/v1/keys")
@allow()
async def keys_create(request: web.Request) -> web.Response:
    role, name, senders, expires_at = _parse_create(await read_json_object(request))
    actor = principal(request).key_id
    async with connection(request.app[POOL]) as conn, conn.transaction():
        try:
            await refuse_past_expiry(conn, expires_at)
        except ValueError as exc:
            raise ValidationFailed([{"field": "expires_at", "message": str(exc)}]) from None
        key = await create_key(conn, role, name, senders, expires_at, created_by=actor)
        key_id = key.split("_")[1]
        await admin_audit.record(conn, request, "key.created", key_id,
                                 {"role": role.value, "name": name})
        info = await get_key(conn, key_id)
    assert info is not None  # noqa: S101 - created in this transaction
    return json_ok({**_shown(info), "key": key}, status=201)


async def _known(request: web.Request) -> str:
    key_id = named_key_id(request.match_info["key_id"])
    if len(key_id) > 64:
        raise ApiError(404, "not_found", "no such key")
    return key_id


# In key id order, so that two admins ending each other's key at once take turns: each
# change holds its own key until it commits (admin_audit.record), and each held its own
# and waited for the other's, a deadlock PostgreSQL ended by failing one (a 500).
HOLD_BOTH = "SELECT 1 FROM api_keys WHERE key_id = ANY($1::text[]) ORDER BY key_id FOR UPDATE"


async def _hold_both(conn: asyncpg.Connection, request: web.Request, key_id: str) -> None:
    """Lock the key ``key_id`` and the acting one before a change ends the first."""
    await conn.execute(HOLD_BOTH, sorted({key_id, principal(request).key_id}))


@routes.delete("/api/v1/keys/{key_id}")
@allow()
async def keys_revoke(request: web.Request) -> web.Response:
    key_id = await _known(request)
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await _hold_both(conn, request, key_id)
        if not await revoke_key(conn, key_id):
            # 404 as a second delete of a webhook or suppression is, but saying why.
            raise ApiError(404, "not_found", await why_not_revoked(conn, key_id))
        await admin_audit.record(conn, request, "key.revoked", key_id)
        info = await get_key(conn, key_id)
    assert info is not None  # noqa: S101
    return json_ok(_shown(info))


@routes.post("/api/v1/keys/{key_id}/rotate")
@allow()
async def keys_rotate(request: web.Request) -> web.Response:
    key_id = await _known(request)
    data = await read_json_object(request) if request.can_read_body else {}
    grace = data.get(GRACE, DEFAULT_GRACE_SECONDS)
    problems = unknown_fields(data, {GRACE})
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_GRACE_SECONDS:
        problems.append({"field": GRACE, "message": f"expected 0..{MAX_GRACE_SECONDS}"})
    # A misspelt grace_seconds must not leave a leaked key working for the default day.
    if problems:
        raise ValidationFailed(problems)
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await _hold_both(conn, request, key_id)
        try:
            key = await rotate_key(conn, key_id, dt.timedelta(seconds=grace),
                                   principal(request).key_id)
        except AlreadyRotated as rotated:
            raise ApiError(409, "already_rotated", f"this key was rotated to "
                           f"{rotated.successor}: rotate that one, or revoke this one to "
                           "end its grace period") from None
        if key is None:
            raise ApiError(404, "not_found", "no such active key")
        new_id = key.split("_")[1]
        await admin_audit.record(conn, request, "key.rotated", key_id,
                                 {"new_key_id": new_id, "grace_seconds": grace})
        info = await get_key(conn, new_id)
    assert info is not None  # noqa: S101
    return json_ok({**_shown(info), "key": key}, status=201)


_TIME = {"type": ["string", "null"], "format": "date-time"}
# A name key_name takes: maxLength would count the blanks around it, which it strips
# first (a name of 200 characters with a space around is stored). ECMA-262's \s and
# str.strip's blanks differ only in characters key_name refuses as hidden.
_NAME_PATTERN = rf"^\s*\S(?:[\s\S]{{0,{NAME_MAX - 2}}}\S)?\s*$"
SCHEMAS = {
    "ApiKey": {
        "type": "object",
        "required": ["key_id", "name", "role", "allowed_senders", "created_at", "problems"],
        "properties": {
            "key_id": {"type": "string"}, "name": {"type": "string"},
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "allowed_senders": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "created_by": {"type": ["string", "null"]}, "expires_at": _TIME,
            "revoked_at": _TIME, "rotated_to": {"type": ["string", "null"]},
            "last_used_at": _TIME,
            "owner": {"type": "string", "description": "the first key of its rotation line "
                      "(its own id if it was rotated from none): keys with one owner see "
                      "each other's sent messages"},
            "problems": {"type": "array", "description": "what is wrong with the key as "
                         "stored (allowed senders its role does not take, from before "
                         "they were checked), as a new key's 422 would say it",
                         "items": {"type": "object", "required": ["field", "message"],
                                   "properties": {"field": {"type": "string"},
                                                  "message": {"type": "string"}}}},
            "key": {"type": "string", "description": "the full key, shown once"},
        },
    },
    "NewApiKey": {
        "type": "object",
        "required": ["role", "name"],
        "additionalProperties": False,
        "properties": {
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "name": {"type": "string", "pattern": _NAME_PATTERN, "description": (
                f"1 to {NAME_MAX} characters once the blanks around it are stripped, as it "
                "is stored; no control, invisible or bidi character")},
            "allowed_senders": {"type": "array", "items": {"type": "string"}},
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
}
_KEY_ID = param("key_id", "path", {"type": "string"})
# The codes each handler raises, declared per status (a test asks the service for each).
_NOT_FOUND = {404: ["not_found"]}
_INVALID = {422: [VALIDATION_FAILED]}
OPENAPI_PATHS = {
    "/api/v1/keys": {
        "get": operation("list API keys", [], responses={200: {
            "type": "object", "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": ref("ApiKey")}},
        }}, errors={}),
        "post": operation("create an API key (the key is in this answer only)", [],
                          body=json_content(ref("NewApiKey")), responses={201: ref("ApiKey")},
                          errors=error_codes(JSON_BODY_ERRORS, _INVALID)),
    },
    "/api/v1/keys/{key_id}": {
        "delete": operation("revoke a key (an expired one too); 404 not_found for one "
                            "revoked already", [], parameters=[_KEY_ID],
                            responses={200: ref("ApiKey")}, errors=_NOT_FOUND),
    },
    "/api/v1/keys/{key_id}/rotate": {
        "post": operation(
            "replace a key; the old one stays valid for grace_seconds", [],
            parameters=[_KEY_ID], responses={201: ref("ApiKey")},
            errors=error_codes(JSON_BODY_ERRORS, _INVALID, _NOT_FOUND,
                               {409: ["already_rotated"]}),
            body=json_content({"type": "object", "additionalProperties": False, "properties": {
                GRACE: {"type": "integer", "minimum": 0, "maximum": MAX_GRACE_SECONDS},
            }}),
        ),
    },
}
