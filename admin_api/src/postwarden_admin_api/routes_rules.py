"""Rules of the database-managed policy: quick changes such as blocking a sender now.

The managed policy is an ordinary policy named ``database-rules``; every
change writes a new revision (so history is never lost) and activates it.
Changes build on the active revision, not the newest: after a rollback the
newest is the one rolled back from, and building on it would bring it back.
The stored source is read and written as the policy loader reads it (YAML 1.2):
``010``, ``off`` or ``1:30`` in a rule mean the same in the list as in the engine.
Answers carry the revision they show as an ``ETag`` ("none" before the first); a
change sent with it as ``If-Match`` is refused (412) once another change made a newer
one active, rather than silently undoing that change (two operators editing the same
rule, or both making the first one).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from postwarden_policies import PolicyLoadError
from postwarden_policies.policyset import content_hash
from postwarden_policies.yamlnodes import MERGE_KEY, MERGE_KEYS_REFUSED, dump, read_plain

from . import admin_audit
from .bodies import (
    HIDDEN_REFUSED,
    blank_as_none,
    has_hidden,
    json_ok,
    read_json_object,
    unknown_fields,
)
from .context import POOL, Role, allow, principal
from .engine import off_loop
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
from .preconditions import quoted, require_match
from .revisions import (
    activate,
    fetch_active,
    fetch_latest,
    fetch_revision,
    revision_json,
    revision_label,
    store_revision,
)
from .webhooks.worker import lock_policies_behind_deletes

routes = web.RouteTableDef()
MANAGED_POLICY = "database-rules"
MAX_RULES = 10_000


def managed_document(rules: list[dict[str, Any]]) -> str:
    return dump({
        "version": 1,
        "name": MANAGED_POLICY,
        "description": "Rules managed through the admin API (/api/v1/rules)",
        "mode": "enforce",
        "priority": 1,
        "rules": rules,
    })


def _stored_rules(label: str, source: str) -> list[dict[str, Any]]:
    """The rules of a stored source, read as the engine read it when it was stored."""
    _, document, issues = read_plain(label, source)
    if issues:  # it compiled when stored: an internal error, not the client's
        raise PolicyLoadError(issues)
    rules = document.get("rules") if isinstance(document, dict) else None
    return list(rules or [])


# The rules of the revision last read or written, by (id, content hash): a revision
# never changes, and edits come in runs, each building on the last one (reading
# MAX_RULES rules back costs about a second).
_LAST: dict[tuple[int, str], tuple[dict[str, Any], ...]] = {}


def _remember(revision: asyncpg.Record, rules: list[dict[str, Any]]) -> None:
    _LAST.clear()
    _LAST[(revision["id"], revision["content_hash"])] = tuple(rules)


async def _current(conn: asyncpg.Connection) -> tuple[int | None, list[dict[str, Any]]]:
    """The active revision's id and rules; the newest revision's while none is active."""
    current = await fetch_active(conn, MANAGED_POLICY) or await fetch_latest(conn, MANAGED_POLICY)
    if current is None:
        return None, []
    rules = _LAST.get((current["id"], current["content_hash"]))
    if rules is None:
        read = await off_loop(_stored_rules, f"{MANAGED_POLICY}@r{current['id']}",
                              current["source"])
        _remember(current, read)
        return current["id"], read
    return current["id"], list(rules)  # a new list: the route edits it


# The ETag while there is no revision (a fresh install's rules): a first change sent with
# it is refused once another first change made one, as any change on a stale read is.
NO_REVISION_TAG = quoted("none")


def revision_tag(revision_id: int | None) -> str:
    """The ETag of what revision ``revision_id`` shows (None: no revision)."""
    return NO_REVISION_TAG if revision_id is None else quoted(revision_id)


def check_if_match(request: web.Request, revision_id: int | None) -> None:
    """412 unless If-Match (when sent) names ``revision_id``, the active revision the
    change would replace (.preconditions); ``*`` only while there is one. Call under the
    policy lock."""
    active = "no revision is active" if revision_id is None else (
        f"the active revision is {revision_id}")
    require_match(request, revision_tag(revision_id),
                  "another change made another revision active since this one was read: "
                  "read again, and make the change on what is now", active,
                  exists=revision_id is not None)


async def _base(request: web.Request, conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The rules a change builds on, once If-Match allows it (call under the lock)."""
    revision_id, rules = await _current(conn)
    check_if_match(request, revision_id)
    return rules


def _index(rules: list[dict[str, Any]], name: str) -> int:
    for i, rule in enumerate(rules):
        if rule.get("name") == name:
            return i
    raise ApiError(404, "not_found", "no such rule")


def _position(data: dict[str, Any], length: int) -> int | None:
    """The change's position (its form checked by :func:`_change`), or 422 past the end."""
    position: int | None = data.get("position")
    if position is not None and position > length:
        raise ValidationFailed([{"field": "position", "message": f"expected 0..{length}"}])
    return position


def _change(data: dict[str, Any], rule_required: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The rule (None if absent and not required) and comment of a change; 422 listing
    every bad field at once (it was one at a time: a fixed comment revealed a bad rule)."""
    problems = unknown_fields(data, {"rule", "position", "comment"})
    rule, comment, position = data.get("rule"), data.get("comment"), data.get("position")
    if (rule is not None or rule_required) and not (
            isinstance(rule, dict) and isinstance(rule.get("name"), str)):
        problems.append({"field": "rule", "message": "expected a rule with a name"})
    elif _has_merge_key(rule):
        problems.append({"field": "rule", "message": MERGE_KEYS_REFUSED})
    if comment is not None and (not isinstance(comment, str) or len(comment) > 1000):
        problems.append({"field": "comment", "message": "expected at most 1000 characters"})
    elif comment is not None and has_hidden(comment):  # as a revision's upload comment
        problems.append({"field": "comment", "message": HIDDEN_REFUSED})
    if position is not None and (isinstance(position, bool) or not isinstance(position, int)
                                 or position < 0):
        problems.append({"field": "position", "message": "expected an integer, 0 or more"})
    if problems:
        raise ValidationFailed(problems)
    return rule, blank_as_none(comment)


def _has_merge_key(value: Any) -> bool:
    """Whether a << key is in ``value`` at any depth: a rule converted from YAML without
    its merges resolved. Written out it would be quoted, a key like any other ("unknown
    key '<<'", or a header named "<<"), where a policy file refuses it as a merge key."""
    stack = [value]
    while stack:  # the body's size bounds it
        item = stack.pop()
        if isinstance(item, dict):
            if MERGE_KEY in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _at_rule(exc: ValidationFailed, label: str) -> ValidationFailed:
    """The compile problems of a change, those in the rules written (``label``) as the
    field ``rule`` and the loader's message (which names the rule): the client sent a
    rule, not a document; and ``label`` names a revision never stored (its id a number
    the refused change consumed), not one to look up."""
    return ValidationFailed([{"field": "rule", "message": d["message"]}
                             if d.get("file") == label else d for d in exc.details],
                            exc.message)


async def _save(request: web.Request, conn: asyncpg.Connection, rules: list[dict[str, Any]],
                action: str, *, target: str, comment: str | None,
                summary: dict[str, Any] | None = None) -> web.Response:
    # YAML costs a second at MAX_RULES: off the event loop. Compiled once, with the
    # rest of the set, by activate(): a problem there is 422 and rolls the revision back.
    source = await off_loop(managed_document, rules)
    actor = principal(request).key_id
    row, _ = await store_revision(conn, MANAGED_POLICY, source,
                                  content_hash=content_hash([source]), author=actor,
                                  comment=comment or action)
    try:
        change = await activate(conn, row, actor)
    except ValidationFailed as exc:
        raise _at_rule(exc, revision_label(row)) from None
    _remember(row, rules)  # as read back: dump() writes what YAML reads unchanged
    if change.changed:  # a change to nothing (the rule as it was) is no change to log
        await admin_audit.record(conn, request, action, target,
                                 {**(summary or {}), "revision": row["id"]})
    stored = await fetch_revision(conn, row["id"])  # again: now active
    assert stored is not None  # noqa: S101 - stored above
    return json_ok({"revision": revision_json(stored), "rules": rules,
                    "warnings": change.warnings}, headers={"ETag": revision_tag(stored["id"])})


@routes.get("/api/v1/rules")
@allow(Role.OPERATOR, Role.AUDITOR)
async def rules_list(request: web.Request) -> web.Response:
    async with connection(request.app[POOL]) as conn:
        revision_id, rules = await _current(conn)
    return json_ok({"revision_id": revision_id, "rules": rules},
                   headers={"ETag": revision_tag(revision_id)})


@routes.post("/api/v1/rules")
@allow(Role.OPERATOR)
async def rules_create(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    rule, comment = _change(data, rule_required=True)
    assert rule is not None  # noqa: S101 - required
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await lock_policies_behind_deletes(conn, request.app)
        rules = await _base(request, conn)
        if any(r.get("name") == rule["name"] for r in rules):
            raise ApiError(409, "rule_exists", "a rule with this name exists")
        if len(rules) >= MAX_RULES:
            raise ApiError(409, "too_many_rules", f"at most {MAX_RULES} rules")
        position = _position(data, len(rules))
        rules.insert(len(rules) if position is None else position, rule)
        response = await _save(request, conn, rules, "rule.created", target=rule["name"],
                                 comment=comment)
    response.set_status(201)
    return response


@routes.patch("/api/v1/rules/{name}")
@allow(Role.OPERATOR)
async def rules_update(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    data = await read_json_object(request)
    replacement, comment = _change(data, rule_required=False)
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await lock_policies_behind_deletes(conn, request.app)
        rules = await _base(request, conn)
        index = _index(rules, name)
        rule = rules.pop(index)
        if replacement is not None:
            if any(r.get("name") == replacement["name"] for r in rules):
                raise ApiError(409, "rule_exists", "a rule with this name exists")
            rule = replacement
        position = _position(data, len(rules))
        rules.insert(index if position is None else position, rule)
        # A rename: the entry names the new name too, or a search for it finds no change.
        renamed = {"renamed_to": rule["name"]} if rule["name"] != name else None
        return await _save(request, conn, rules, "rule.updated", target=name, comment=comment,
                           summary=renamed)


@routes.delete("/api/v1/rules/{name}")
@allow(Role.OPERATOR)
async def rules_delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    async with connection(request.app[POOL]) as conn, conn.transaction():
        await lock_policies_behind_deletes(conn, request.app)
        rules = await _base(request, conn)
        del rules[_index(rules, name)]
        return await _save(request, conn, rules, "rule.deleted", target=name, comment=None)


_RULE = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}},
         "description": "a rule of the policy language (name, when, then, ...)"}
_CHANGE = {"type": "object", "properties": {
    "rule": _RULE, "position": {"type": "integer", "minimum": 0},
    "comment": {"type": "string", "maxLength": 1000},
}}
_RESULT = {"type": "object", "required": ["revision", "rules", "warnings"], "properties": {
    "revision": ref("Revision"), "rules": {"type": "array", "items": _RULE},
    "warnings": {"type": "array", "items": ref("PolicyWarning")}}}
_NAME = param("name", "path", {"type": "string"})
IF_MATCH = param("If-Match", "header", {"type": "string"}, description=(
    "the revision the change replaces, as a quoted id, \"none\" for none (the rules' ETag): 412 "
    "precondition_failed if another change made another revision active since"))
_ETAG = {"ETag": header('the revision shown, as a quoted id ("none" while there is no '
                        "revision): send it as If-Match", {"type": "string"})}
STALE = {412: ref("Error")}
STALE_TEXT = {412: "precondition_failed: If-Match names a revision no longer active"}
# The codes each handler raises, declared per status (a test asks the service for each).
_SAVED = {412: ["precondition_failed"], 422: [VALIDATION_FAILED]}
_NO_RULE = {404: ["not_found"]}
OPENAPI_PATHS = {
    "/api/v1/rules": {
        "get": operation("rules of the database-managed policy's active revision, in order",
                         [Role.OPERATOR, Role.AUDITOR],
                         responses={200: {"type": "object", "required": ["rules"], "properties": {
                             "revision_id": {"type": ["integer", "null"]},
                             "rules": {"type": "array", "items": _RULE}}}},
                         headers={200: _ETAG}, errors={}),
        "post": operation("add a rule (at position, default last); a new revision, activated",
                          [Role.OPERATOR], body=json_content({**_CHANGE, "required": ["rule"]}),
                          parameters=[IF_MATCH], responses={201: _RESULT, **STALE},
                          descriptions=STALE_TEXT, headers={201: _ETAG},
                          errors=error_codes(JSON_BODY_ERRORS, _SAVED,
                                             {409: ["rule_exists", "too_many_rules"]})),
    },
    "/api/v1/rules/{name}": {
        "patch": operation("replace or move a rule; a new revision, activated",
                           [Role.OPERATOR], parameters=[_NAME, IF_MATCH],
                           body=json_content(_CHANGE), responses={200: _RESULT, **STALE},
                           descriptions=STALE_TEXT, headers={200: _ETAG},
                           errors=error_codes(JSON_BODY_ERRORS, _SAVED, _NO_RULE,
                                              {409: ["rule_exists"]})),
        "delete": operation("delete a rule; a new revision, activated", [Role.OPERATOR],
                            parameters=[_NAME, IF_MATCH], responses={200: _RESULT, **STALE},
                            descriptions=STALE_TEXT, headers={200: _ETAG},
                            errors=error_codes(_SAVED, _NO_RULE)),
    },
}
