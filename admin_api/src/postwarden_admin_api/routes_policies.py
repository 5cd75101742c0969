"""Policy revisions: upload (validated), list, fetch as YAML, diff, activate, roll back,
deploy (activate and deactivate several policies as one change), deactivate.

The policy ``database-rules`` belongs to the Rules API (routes_rules): it rewrites
the policy from its rules alone, so these routes refuse to upload, activate,
deploy or deactivate it (422 ``reserved_policy_name``). Rolling it back stays
possible: that is how a Rules API change is undone. But only to a revision that
is the document the Rules API writes for its rules: one uploaded by hand before
uploads of that name were refused may set anything else (mode, defaults...),
which the Rules API would silently drop with its next change; rolling back to it
is refused with the same code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from postwarden_policies import PolicyIssue
from postwarden_policies.yamlnodes import read_plain

from . import admin_audit
from .bodies import (
    HIDDEN_REFUSED,
    QueryProblems,
    blank_as_none,
    check_utf8,
    has_hidden,
    json_ok,
    path_int,
    query_int,
    read_body,
    read_json_object,
    shown,
    unknown_fields,
)
from .context import POOL, Role, allow, principal, reads_query
from .diffs import unified_diff
from .engine import (
    LOADER_WARNINGS,
    compile_upload,
    loader_warnings,
    not_utf8_detail,
    off_loop,
)
from .errors import ApiError, ValidationFailed, connection
from .notify_targets import ENDPOINT_DISABLED, ENDPOINT_MISSING, notify_warnings
from .openapi import (
    JSON_BODY_ERRORS,
    VALIDATION_FAILED,
    PerType,
    error_codes,
    header,
    json_content,
    operation,
    param,
    ref,
)
from .preconditions import digest_tag, require_match
from .revisions import (
    SELECT_ACTIVE_SET,
    activate,
    active_revisions,
    change_active_set,
    fetch_latest,
    fetch_revision,
    list_policies,
    list_revisions,
    previous_revision,
    revision_json,
    revision_label,
    store_revision,
    stored_policies,
)
from .routes_rules import (
    IF_MATCH,
    MANAGED_POLICY,
    STALE,
    STALE_TEXT,
    check_if_match,
    managed_document,
)
from .webhooks.worker import lock_policies_behind_deletes

routes = web.RouteTableDef()
SOURCE_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "application/json",
                "text/plain")
COMMENT_MAX = 1000
DEPLOY_MAX = 1000  # revisions, and policies, one deploy may name
REVISION_FORMATS = ("yaml", "json")  # of GET /api/v1/revisions/{id}


async def _source(request: web.Request) -> str:
    if request.content_type not in SOURCE_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"send the policy as one of {', '.join(SOURCE_TYPES)}")
    # Labelled otherwise, it was read as UTF-8 all the same: "cafÃ©" stored for "café".
    check_utf8(request, "as a policy is read")
    body = await read_body(request)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed([not_utf8_detail("body", body, exc)]) from None


def _comment(request: web.Request) -> str | None:
    # A parameter it does not know is refused (QueryProblems): a misspelt comment
    # (commment=why) was dropped, and the revision stored without the reason given for it.
    query = QueryProblems(request)
    comment = request.query.get("comment")
    if comment is not None and len(comment) > COMMENT_MAX:
        query.found.append({"field": "comment", "message": f"at most {COMMENT_MAX} chars"})
    elif comment is not None and has_hidden(comment):  # shown in listings and the CLI
        query.found.append({"field": "comment", "message": HIDDEN_REFUSED})
    query.raise_any()
    return blank_as_none(comment)


@routes.post("/api/v1/policies")
@allow(Role.OPERATOR)
@reads_query("comment", listed=True)
async def policy_upload(request: web.Request) -> web.Response:
    source = await _source(request)
    comment = _comment(request)
    found: list[PolicyIssue] = []
    policy_set, name = await off_loop(compile_upload, source, found)
    if name == MANAGED_POLICY:
        line, column = policy_set.policies[0].where
        raise _reserved([{"file": "upload", "line": line, "column": column,
                          "message": f"policy name {name!r} is reserved for the Rules API"}])
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await lock_policies_behind_deletes(conn, request.app)  # store_revision's, at once
        row, created = await store_revision(
            conn, name, source, content_hash=policy_set.content_hash,
            author=principal(request).key_id, comment=comment,
        )
        if created:
            await admin_audit.record(conn, request, "policy.uploaded", revision_label(row),
                                     {"content_hash": row["content_hash"], "comment": comment})
        warnings = await notify_warnings(conn, policy_set.policies) + loader_warnings(found)
    return json_ok({**revision_json(row), "warnings": warnings}, status=201 if created else 200)


@routes.get("/api/v1/policies")
@allow(Role.OPERATOR, Role.AUDITOR)
async def policy_list(request: web.Request) -> web.Response:
    async with (connection(request.app[POOL]) as conn,
                conn.transaction(isolation="repeatable_read", readonly=True)):
        policies = await list_policies(conn)
        tag = await _active_set_tag(conn)
    return json_ok({"policies": policies}, headers={"ETag": tag})


async def _active_set_tag(conn: asyncpg.Connection) -> str:
    """The ETag of which revisions are active (GET /api/v1/policies), a deploy's If-Match."""
    rows = await conn.fetch(SELECT_ACTIVE_SET)
    return digest_tag("policies", (tuple(row) for row in rows))


async def _deploy_if_match(request: web.Request, conn: asyncpg.Connection) -> None:
    """A deploy's If-Match: the active set as GET /api/v1/policies showed it (its ETag)."""
    tag = await _active_set_tag(conn)
    require_match(request, tag, "another change changed which policies are active since "
                  "they were read: read them again, and deploy on what is now",
                  f"the active policies' ETag is now {tag}")


@routes.get("/api/v1/policies/{name}/revisions")
@allow(Role.OPERATOR, Role.AUDITOR)
@reads_query("limit", "before", listed=True)  # limt=5 listed 100
async def policy_revisions(request: web.Request) -> web.Response:
    query = QueryProblems(request)
    limit = query.read(query_int, "limit", 100, 1, 1000)
    # Paged as the admin log is: the Rules API writes a revision per change, and those
    # past the first 1000 could not be listed (nor their ids found, to roll back to).
    before = query.read(query_int, "before", 0, 1, 2**63 - 1) or None  # 0: no revision id
    query.raise_any()
    assert limit is not None  # noqa: S101 - a bad one was raised above
    name = request.match_info["name"]
    async with connection(request.app[POOL]) as conn:
        found, next_before = await list_revisions(conn, name, limit, before)
        # An empty page past a before too: "none older" passed for a misspelt name.
        if not found and await fetch_latest(conn, name) is None:
            raise ApiError(404, "not_found", "no such policy")
    return json_ok({"revisions": found, "next_before": next_before})


async def _revision(request: web.Request, name: str = "revision_id") -> Any:
    revision_id = path_int(request, name)
    async with connection(request.app[POOL]) as conn:
        row = await fetch_revision(conn, revision_id)
    if row is None:
        raise ApiError(404, "not_found", "no such revision")
    return row


@routes.get("/api/v1/revisions/{revision_id}")
@allow(Role.OPERATOR, Role.AUDITOR)
@reads_query("format", listed=True)
async def revision_get(request: web.Request) -> web.Response:
    # A format or parameter it does not know is refused: format=JSON (or fromat=json) was
    # answered in YAML, for a client to fail on.
    query = QueryProblems(request)
    wanted = request.query.get("format", "yaml")
    if wanted not in REVISION_FORMATS:
        query.found.append({"field": "format", "message": "expected yaml or json"})
    query.raise_any()
    row = await _revision(request)
    if wanted == "json":
        return json_ok(revision_json(row, with_source=True))
    return web.Response(text=row["source"], content_type="application/yaml", headers={
        "X-Policy-Name": row["policy_name"], "X-Content-Hash": row["content_hash"],
    })


@routes.get("/api/v1/revisions/{revision_id}/diff/{other_id}")
@allow(Role.OPERATOR, Role.AUDITOR)
async def revision_diff(request: web.Request) -> web.Response:
    old = await _revision(request)
    new = await _revision(request, "other_id")
    return web.Response(text=await off_loop(_unified_diff, old, new), content_type="text/x-diff")


def _unified_diff(old: Any, new: Any) -> str:
    return unified_diff(old["source"], new["source"], f"{old['policy_name']}@r{old['id']}",
                        f"{new['policy_name']}@r{new['id']}")


async def _activate(request: web.Request, action: str,
                    chosen: Callable[[asyncpg.Connection], Awaitable[asyncpg.Record]]
                    ) -> web.Response:
    """Activate the revision ``chosen`` picks (or refuses), picked under the lock: what
    it reads (the active revision a rollback steps back from) stays as read until the
    change is made, and If-Match is checked against what stays active."""
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await lock_policies_behind_deletes(conn, request.app)
        row = await chosen(conn)
        name = row["policy_name"]
        check_if_match(request, (await active_revisions(conn, [name])).get(name))
        # The active revision again changes nothing: no entry, as a deploy writes none.
        change = await activate(conn, row, principal(request).key_id)
        if change.changed:
            await admin_audit.record(conn, request, action, revision_label(row),
                                     {"content_hash": row["content_hash"]})
        row = await fetch_revision(conn, row["id"])
    return json_ok({**revision_json(row), "warnings": change.warnings})


def _reserved(details: list[dict[str, Any]] | None = None) -> ApiError:
    return ApiError(422, "reserved_policy_name", f"the policy {MANAGED_POLICY!r} belongs to "
                    "the Rules API: change it through /api/v1/rules", details)


@routes.post("/api/v1/revisions/{revision_id}/activate")
@allow(Role.OPERATOR)
async def revision_activate(request: web.Request) -> web.Response:
    revision_id = path_int(request, "revision_id")

    async def chosen(conn: asyncpg.Connection) -> asyncpg.Record:
        row = await fetch_revision(conn, revision_id)
        if row is None:
            raise ApiError(404, "not_found", "no such revision")
        if row["policy_name"] == MANAGED_POLICY:
            raise _reserved()
        return row

    return await _activate(request, "policy.activated", chosen)


def _deploy_lists(data: dict[str, Any]) -> tuple[list[int], list[str]]:
    """The revision ids to activate and the policy names to deactivate, or 422."""
    problems = unknown_fields(data, {"activate", "deactivate"})
    ids, names = data.get("activate", []), data.get("deactivate", [])
    for field, items, valid, expected in (
        ("activate", ids, lambda v: type(v) is int and 0 < v < 2**63, "revision ids"),
        ("deactivate", names, lambda v: isinstance(v, str) and v != "", "policy names"),
    ):
        if not isinstance(items, list) or len(items) > DEPLOY_MAX or not all(map(valid, items)):
            problems.append({"field": field,
                             "message": f"expected a list of at most {DEPLOY_MAX} {expected}"})
    if problems:
        raise ValidationFailed(problems)
    return ids, names


def _one_change_per_policy(rows: list[asyncpg.Record], names: list[str]) -> None:
    """422 when a policy is named twice (two revisions, or activated and deactivated)."""
    fields = [(f"activate[{i}]", row["policy_name"]) for i, row in enumerate(rows)]
    fields += [(f"deactivate[{i}]", name) for i, name in enumerate(names)]
    if any(name == MANAGED_POLICY for _, name in fields):
        raise _reserved()
    first: dict[str, str] = {}
    problems = []
    for field, name in fields:
        if name in first:
            problems.append({"field": field,
                             "message": f"policy {shown(name)} is also in {first[name]}"})
        else:
            first[name] = field
    if problems:
        raise ValidationFailed(problems, "a policy is named more than once")


async def _revisions(conn: asyncpg.Connection, ids: list[int]) -> list[asyncpg.Record]:
    """The revisions ``ids``, in that order, or 404 naming each one missing."""
    rows = [await fetch_revision(conn, revision_id) for revision_id in ids]
    missing = [{"field": f"activate[{i}]", "message": "no such revision"}
               for i, row in enumerate(rows) if row is None]
    if missing:
        raise ApiError(404, "not_found", "no such revision", missing)
    return rows


async def _stored(conn: asyncpg.Connection, names: list[str], inactive: list[str]) -> None:
    """404 naming each of ``inactive`` never uploaded: 409 "is not active" passed a
    misspelt name for one that exists."""
    stored = await stored_policies(conn, inactive)
    if missing := [{"field": f"deactivate[{i}]", "message": f"no policy {shown(name)}"}
                   for i, name in enumerate(names) if name in inactive and name not in stored]:
        raise ApiError(404, "not_found", "no such policy", missing)


async def _deploy(request: web.Request, ids: list[int], names: list[str],
                  if_match: Callable[[web.Request, asyncpg.Connection], Awaitable[None]]
                  ) -> web.Response:
    """Activate revisions ``ids`` and deactivate policies ``names``: all of it, or nothing,
    and only once ``if_match`` allows it (412 otherwise)."""
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await lock_policies_behind_deletes(conn, request.app)  # what is active: read under it
        await if_match(request, conn)
        rows = await _revisions(conn, ids)
        _one_change_per_policy(rows, names)
        active = await active_revisions(conn, names)
        if inactive := [name for name in names if name not in active]:
            await _stored(conn, names, inactive)
            raise ApiError(409, "no_active_policy", "a policy to deactivate is not active",
                           [{"field": "deactivate", "message": f"{shown(name)} is not active"}
                            for name in inactive])
        changed = [row for row in rows if not row["active"]]  # the others: no reload, no event
        change = await change_active_set(conn, changed, names, principal(request).key_id)
        for row in changed:
            await admin_audit.record(conn, request, "policy.activated", revision_label(row),
                                     {"content_hash": row["content_hash"]})
        for name in names:
            await admin_audit.record(conn, request, "policy.deactivated",
                                     f"{name}@r{active[name]}")
        rows = await _revisions(conn, ids)
        headers = {"ETag": await _active_set_tag(conn)}
    return json_ok({"revisions": [revision_json(row) for row in rows],
                    "activated": [row["id"] for row in changed], "deactivated": names,
                    "warnings": change.warnings}, headers=headers)


@routes.post("/api/v1/policies/deploy")
@allow(Role.OPERATOR)
async def policies_deploy(request: web.Request) -> web.Response:
    ids, names = _deploy_lists(await read_json_object(request))
    return await _deploy(request, ids, names, _deploy_if_match)


@routes.post("/api/v1/policies/{name}/deactivate")
@allow(Role.OPERATOR)
async def policy_deactivate(request: web.Request) -> web.Response:
    name = request.match_info["name"]

    async def if_match(request: web.Request, conn: asyncpg.Connection) -> None:
        # As an activation's or a rollback's: the policy's active revision as read.
        check_if_match(request, (await active_revisions(conn, [name])).get(name))

    return await _deploy(request, [], [name], if_match)


@routes.post("/api/v1/policies/{name}/rollback")
@allow(Role.OPERATOR)
async def policy_rollback(request: web.Request) -> web.Response:
    """Activate ``revision_id`` from the body, or the revision before the active one."""
    name = request.match_info["name"]
    data = await read_json_object(request) if request.body_exists else {}
    target = data.get("revision_id")
    # A misspelt revision_id must not roll back to the revision before the active one.
    problems = unknown_fields(data, {"revision_id"})
    # One no revision can have (0, -1) is the request's fault, as in a deploy: it was
    # 404 "no such revision of this policy", as if one had been deleted.
    if target is not None and (type(target) is not int or not 0 < target < 2**63):
        problems.append({"field": "revision_id", "message": "expected a revision id, 1 or more"})
    if problems:
        raise ValidationFailed(problems)

    async def chosen(conn: asyncpg.Connection) -> asyncpg.Record:
        # The revision before the active one is found under the lock: found before it, a
        # rollback or an activation meanwhile made it the wrong one (two rollbacks at
        # once both stepped back to the same revision).
        revision_id = await _previous(conn, name) if target is None else target
        return await _rollback_target(conn, name, revision_id)

    return await _activate(request, "policy.rolled_back", chosen)


async def _rollback_target(conn: asyncpg.Connection, name: str, revision_id: int
                           ) -> asyncpg.Record:
    """Revision ``revision_id`` of policy ``name`` when it may be rolled back to, or why not."""
    row = await fetch_revision(conn, revision_id)
    if row is None or row["policy_name"] != name:
        raise ApiError(404, "not_found", "no such revision of this policy")
    if name == MANAGED_POLICY and not await off_loop(_written_by_rules_api, row):
        raise ApiError(422, "reserved_policy_name", f"revision {revision_id} of "
                       f"{MANAGED_POLICY!r} was uploaded by hand, not written by the Rules "
                       "API: roll back to one it wrote (name it as revision_id)")
    return row


async def _previous(conn: asyncpg.Connection, name: str) -> int:
    """The revision before the active one of policy ``name``, or the reason there is none
    (it was "no earlier revision" for a policy never uploaded, or one not active)."""
    target = await previous_revision(conn, name)
    if target is not None:
        return target
    if await fetch_latest(conn, name) is None:
        raise ApiError(404, "not_found", "no such policy")
    if not await active_revisions(conn, [name]):
        raise ApiError(409, "no_active_policy", f"{name!r} is not active: name the revision "
                       "to activate as revision_id")
    raise ApiError(409, "no_previous_revision", "no earlier revision to roll back to")


def _written_by_rules_api(revision: asyncpg.Record) -> bool:
    """Whether a revision reads as the document the Rules API writes for its rules.
    Documents are compared, not text: a change of the YAML writer's layout leaves the
    revisions it wrote before restorable."""
    label = revision_label(revision)
    _, document, _ = read_plain(label, revision["source"])
    rules = document.get("rules") if isinstance(document, dict) else None
    if not isinstance(rules, list):
        return False
    _, generated, _ = read_plain(label, managed_document(rules))
    return bool(document == generated)


_STR = {"type": "string"}
_NULL_STR = {"type": ["string", "null"]}
_INT = {"type": "integer", "minimum": 1}
_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
SCHEMAS = {
    "Revision": {
        "type": "object",
        "required": ["id", "policy_name", "content_hash", "created_at", "active"],
        "properties": {
            "id": {"type": "integer"}, "policy_name": _STR, "content_hash": _STR,
            "author_key_id": _NULL_STR, "comment": _NULL_STR,
            "created_at": {"type": "string", "format": "date-time"},
            "active": {"type": "boolean"}, "source": _STR,
            "warnings": {"type": "array", "items": ref("PolicyWarning"),
                         "description": "in the answer of an upload or activation only"},
        },
    },
    "PolicyWarning": {
        "type": "object", "required": ["code", "message"],
        "description": "the change is made; something in it may not do what was meant: "
                       "notify_endpoint_missing, a rule notifying a webhook endpoint that "
                       "does not exist; notify_endpoint_disabled, one notifying a disabled "
                       "endpoint (by an operator, or after its receiver answered 410 Gone); "
                       + "; ".join(f"{code}, {meaning}"
                                   for code, meaning in LOADER_WARNINGS.items()),
        "properties": {
            "code": {"type": "string",
                     # The loader's, as engine gives them: a code added there is listed.
                     "enum": [ENDPOINT_MISSING, ENDPOINT_DISABLED, *sorted(LOADER_WARNINGS)]},
            "endpoint": {"type": "string", "description": "the webhook endpoint named"},
            "rules": {"type": "array", "items": _STR,
                      "description": "the rules (policy/rule) naming it"},
            "file": {"type": "string", "description": "where the mistake is: upload, or "
                     "the revision activated as name@r<id>"},
            "line": {"type": "integer", "minimum": 1},
            "column": {"type": "integer", "minimum": 1},
            "message": _STR,
        },
    },
    "Deployment": {
        "type": "object",
        "required": ["revisions", "activated", "deactivated", "warnings"],
        "properties": {
            "revisions": {"type": "array", "items": ref("Revision"),
                          "description": "the revisions named, all active now"},
            "activated": {"type": "array", "items": {"type": "integer"},
                          "description": "those that were not active before"},
            "deactivated": {"type": "array", "items": _STR},
            "warnings": {"type": "array", "items": ref("PolicyWarning"),
                         "description": "of the revisions activated"},
        },
    },
}
_REVISION = param("revision_id", "path", _INT)
_NAME = param("name", "path", _STR)
_OPERATORS = [Role.OPERATOR]
_READERS = [Role.OPERATOR, Role.AUDITOR]
# The codes each handler raises, declared per status (a test asks the service for each).
_NOT_FOUND = {404: ["not_found"]}
_INVALID = {422: [VALIDATION_FAILED]}
_CHANGE = {422: [VALIDATION_FAILED, "reserved_policy_name"]}  # the set does not load
_INACTIVE = {409: ["no_active_policy"]}
_STALE = {412: ["precondition_failed"]}
_SET_ETAG = {"ETag": header("which revisions are active: send it as a deploy's If-Match",
                            {"type": "string"})}
OPENAPI_PATHS = {
    "/api/v1/policies": {
        "post": operation(
            "upload a policy document; 422 lists every problem with line and column "
            "(reserved_policy_name: database-rules belongs to /api/v1/rules)",
            _OPERATORS, parameters=[param("comment", "query", {"type": "string",
                                                                "maxLength": COMMENT_MAX})],
            body={kind: {"schema": {} if kind == "application/json" else _STR}
                  for kind in SOURCE_TYPES},
            responses={201: ref("Revision"), 200: ref("Revision")},
            errors=error_codes({408: ["request_timeout"], 415: ["unsupported_media_type"]},
                               _CHANGE),
        ),
        "get": operation("policies with their latest and active revisions", _READERS,
                         responses={200: {"type": "object", "required": ["policies"],
                                          "properties": {"policies": {"type": "array"}}}},
                         headers={200: _SET_ETAG}, errors={}),
    },
    "/api/v1/policies/{name}/revisions": {"get": operation(
        "revisions of one policy, newest first", _READERS,
        parameters=[_NAME, param("limit", "query", {"type": "integer", "minimum": 1,
                                                    "maximum": 1000}),
                    param("before", "query", {"type": "integer", "minimum": 1},
                          description="a next_before: the revisions older than it")],
        responses={200: {"type": "object", "required": ["revisions", "next_before"],
                         "properties": {
                             "revisions": {"type": "array", "items": ref("Revision")},
                             "next_before": {"type": ["integer", "null"]}}}},
        errors=error_codes(_INVALID, _NOT_FOUND),
    )},
    "/api/v1/policies/deploy": {"post": operation(
        "activate revisions and deactivate policies as one change: the resulting set is "
        "compiled once, and a problem (422 with every issue, file, line and column) refuses "
        "all of it; milters reload through NOTIFY when anything changed", _OPERATORS,
        body=json_content({"type": "object", "additionalProperties": False, "properties": {
            "activate": {"type": "array", "maxItems": DEPLOY_MAX, "items": _ID,
                         "description": "revision ids, at most one per policy"},
            "deactivate": {"type": "array", "maxItems": DEPLOY_MAX,
                           "items": {"type": "string", "minLength": 1},
                           "description": "names of active policies"},
        }}),
        parameters=[param("If-Match", "header", {"type": "string"}, description=(
            "the active policies' ETag (GET /api/v1/policies) as read: 412 "
            "precondition_failed once another change made other revisions active"))],
        responses={200: ref("Deployment"), **STALE}, headers={200: _SET_ETAG},
        descriptions={404: "not_found: details[].field each activate[i] that is no "
                           "revision, each deactivate[i] that is no policy",
                      412: "precondition_failed: If-Match names active policies another "
                           "change replaced"},
        errors=error_codes(JSON_BODY_ERRORS, _NOT_FOUND, _INACTIVE, _STALE, _CHANGE),
    )},
    "/api/v1/policies/{name}/deactivate": {"post": operation(
        "deactivate a policy (its revisions are kept); milters reload through NOTIFY",
        _OPERATORS, parameters=[_NAME, IF_MATCH], responses={200: ref("Deployment"), **STALE},
        descriptions=STALE_TEXT, headers={200: _SET_ETAG},
        errors=error_codes(_NOT_FOUND, _INACTIVE, _STALE, _CHANGE),
    )},
    "/api/v1/policies/{name}/rollback": {"post": operation(
        "activate an earlier revision (default: the one before the active one); of "
        "database-rules only one the Rules API wrote (else 422 reserved_policy_name)",
        _OPERATORS,
        parameters=[_NAME, IF_MATCH], responses={200: ref("Revision"), **STALE},
        descriptions=STALE_TEXT,
        body=json_content({"type": "object", "additionalProperties": False,
                           "properties": {"revision_id": _INT}}),
        errors=error_codes(JSON_BODY_ERRORS, _NOT_FOUND, _STALE, _CHANGE,
                           {409: ["no_active_policy", "no_previous_revision"]}),
    )},
    "/api/v1/revisions/{revision_id}": {"get": operation(
        "a revision's YAML source (format=json: metadata and source)", _READERS,
        parameters=[_REVISION, param("format", "query", {"type": "string",
                                                         "enum": list(REVISION_FORMATS)})],
        responses={200: PerType({"application/yaml": _STR, "application/json": ref("Revision")})},
        headers={200: {  # with the YAML source only
            "X-Policy-Name": header("the revision's policy", {"type": "string"}, required=False),
            "X-Content-Hash": header("the source's content hash", {"type": "string"},
                                     required=False),
        }},
        errors=error_codes(_INVALID, _NOT_FOUND),
    )},
    "/api/v1/revisions/{revision_id}/diff/{other_id}": {"get": operation(
        "unified diff from one revision to another", _READERS,
        parameters=[_REVISION, param("other_id", "path", _INT)],
        responses={200: _STR}, response_type="text/x-diff", errors=_NOT_FOUND,
    )},
    "/api/v1/revisions/{revision_id}/activate": {"post": operation(
        "activate a revision (not one of database-rules); milters reload through NOTIFY",
        _OPERATORS,
        parameters=[_REVISION, IF_MATCH], responses={200: ref("Revision"), **STALE},
        descriptions=STALE_TEXT, errors=error_codes(_NOT_FOUND, _STALE, _CHANGE),
    )},
}
