"""Runtime settings: read, and change with validation (secrets write-only; secrets and a
shorter audit retention are admins' to change)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from . import admin_audit
from .bodies import json_ok, read_json_object
from .context import POOL, Role, allow, principal
from .errors import ApiError, ValidationFailed, connection
from .openapi import (
    JSON_BODY_ERRORS,
    VALIDATION_FAILED,
    error_codes,
    header,
    json_content,
    operation,
    param,
    ref,
)
from .preconditions import digest_tag, require_match
from .runtime_settings import (
    FIELDS,
    INT_BOUNDS,
    MIN_SECRET_CHARS,
    RUNTIME,
    SECRET_SETTINGS,
    apply_changes,
    describe_settings,
    real_changes,
    validate_changes,
)
from .secrets import KEYRING

routes = web.RouteTableDef()
RETENTION = "audit_retention_days"
# pg_advisory_xact_lock key: the ASCII of "pwsettin". Changes one at a time, so that
# the values a change replaced, as the admin log keeps them, are those it replaced.
SETTINGS_LOCK_KEY = 0x707773657474696E


# The state the settings' ETag is of: each stored setting's value and time of change (a
# secret's by its time alone: nothing of its value). A default restored deletes its row.
SELECT_STATE = "SELECT name, value::text, updated_at FROM runtime_settings ORDER BY name"


async def _shown(conn: asyncpg.Connection) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings as shown, and their ETag header (in a transaction: one snapshot)."""
    shown = await describe_settings(conn)
    rows = await conn.fetch(SELECT_STATE)
    return shown, {"ETag": digest_tag("settings", (tuple(row) for row in rows))}


@routes.get("/api/v1/settings")
@allow(Role.OPERATOR)
async def settings_get(request: web.Request) -> web.Response:
    async with (connection(request.app[POOL]) as conn,
                conn.transaction(isolation="repeatable_read", readonly=True)):
        shown, headers = await _shown(conn)
    return json_ok(shown, headers=headers)


def _summary(changes: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
             ) -> dict[str, Any]:
    """What the admin log keeps of ``changes``: a plain setting's value before and after
    (as :func:`describe_settings` shows them: null in a change is the default), only
    ``"<set>"`` or ``"<cleared>"`` for a secret, never its value nor a digest of it."""
    return {
        name: ("<cleared>" if value is None else "<set>") if name in SECRET_SETTINGS
        else {"old": before[name], "new": after[name]}
        for name, value in changes.items()
    }


def _shortens_retention(before: dict[str, Any], changes: dict[str, Any]) -> bool:
    """Whether ``changes`` keep the audit log for fewer days than now (null: the default).
    Retention drops months of it for good: not an operator's call, who could so
    shorten the record of what they did."""
    if RETENTION not in changes:
        return False
    wanted = changes[RETENTION]
    if wanted is None:
        wanted = FIELDS[RETENTION].default
    return bool(wanted < before[RETENTION])


@routes.put("/api/v1/settings")
@allow(Role.OPERATOR)
async def settings_put(request: web.Request) -> web.Response:
    changes, problems = validate_changes(await read_json_object(request))
    if problems:
        raise ValidationFailed(problems)
    admin = principal(request).role is Role.ADMIN
    secret_names = sorted(set(changes) & set(SECRET_SETTINGS))
    if secret_names and not admin:
        raise ApiError(403, "forbidden", "only admins may change secret settings", details=[
            {"field": name, "message": "a secret setting: only an admin key may change it"}
            for name in secret_names])
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SETTINGS_LOCK_KEY)
        before, current = await _shown(conn)
        require_match(request, current["ETag"], "another change changed the settings since "
                      "they were read: read them again, and make the change on what is now",
                      f"the settings' ETag is now {current['ETag']}")
        if not admin and _shortens_retention(before, changes):
            raise ApiError(403, "forbidden", "only admins may shorten audit retention",
                           details=[{"field": RETENTION, "message": (
                               f"shorter than the current {before[RETENTION]} days, which "
                               "drops audit months for good: only an admin key may")}])
        # A value written again is no change: it moved the ETag (another operator's
        # If-Match then failed) and logged {"old": X, "new": X}.
        changes = await real_changes(conn, changes)
        await apply_changes(conn, request.app[KEYRING], changes, principal(request).key_id)
        shown, headers = await _shown(conn)
        if changes:  # a PUT of {} is no change to log (it logged an entry of nothing)
            await admin_audit.record(conn, request, "settings.changed", None,
                                     _summary(changes, before, shown))
    request.app[RUNTIME].invalidate()
    return json_ok(shown, headers=headers)


def _schema_of(name: str) -> dict[str, Any]:
    kind = str(FIELDS[name].type)
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "int":
        bounds = INT_BOUNDS[name]
        return {"type": "integer", "minimum": bounds.minimum, "maximum": bounds.maximum}
    return {"type": "array", "items": {"type": "string"}}


_SECRET_SHOWN = {"type": "object", "required": ["is_set"],
                 "properties": {"is_set": {"type": "boolean"}}}
SCHEMAS = {
    "Settings": {
        "type": "object",
        "required": [*FIELDS, *SECRET_SETTINGS],
        "properties": {
            **{name: _schema_of(name) for name in FIELDS},
            **{name: _SECRET_SHOWN for name in SECRET_SETTINGS},
        },
    },
    "SettingsChange": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{name: {"anyOf": [_schema_of(name), {"type": "null"}]} for name in FIELDS},
            **{name: {"type": ["string", "null"], "minLength": MIN_SECRET_CHARS,
                      "description": f"write-only: {text}"}
               for name, text in SECRET_SETTINGS.items()},
        },
    },
}
_ETAG = {"ETag": header("the settings shown (any change changes it): send it as If-Match",
                        {"type": "string"})}
OPENAPI_PATHS = {
    "/api/v1/settings": {
        "get": operation("current settings (secrets only say whether they are set)",
                         [Role.OPERATOR], responses={200: ref("Settings")},
                         headers={200: _ETAG}, errors={}),
        "put": operation("change settings; null restores a default or clears a secret "
                         "(403 forbidden: a secret, or a shorter audit retention, is "
                         "admins' to change)",
                         [Role.OPERATOR], body=json_content(ref("SettingsChange")),
                         parameters=[param("If-Match", "header", {"type": "string"},
                                           description="the settings' ETag as read: 412 "
                                           "precondition_failed once another change made "
                                           "another since")],
                         responses={200: ref("Settings"), 412: ref("Error")},
                         descriptions={412: "precondition_failed: If-Match names settings "
                                       "another change replaced"},
                         headers={200: _ETAG},
                         errors=error_codes(JSON_BODY_ERRORS, {412: ["precondition_failed"],
                                                               422: [VALIDATION_FAILED]})),
    },
}
