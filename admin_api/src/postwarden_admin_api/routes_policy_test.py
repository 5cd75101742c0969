"""``POST /api/v1/policies/test``: a verdict for an uploaded message, touching no mail.

The policy is an uploaded document, a stored revision, or (neither given)
the active set. The message is evaluated as Postfix hands it to the milter, as
the CLI's eval and test do. The answer is the verdict, the matched rules and what
the sanitizer would change.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from postwarden_policies import Envelope, evaluate_message, verdict_json
from postwarden_policies.conditionformat import ADDRESS
from postwarden_policies.engine import as_received
from postwarden_policies.facts import client_ip_text
from postwarden_store.policies import fetch_active_sources

from .bodies import (
    as_written,
    check_encoding,
    given_twice,
    idle_bounded,
    json_ok,
    unknown_fields,
)
from .context import POOL, Role, allow
from .engine import compile_sources, not_utf8_detail, off_loop
from .errors import ApiError, ValidationFailed, connection
from .openapi import VALIDATION_FAILED, operation
from .revisions import fetch_revision

routes = web.RouteTableDef()
FIELD_MAX = 998
_STR = {"type": "string"}
FORM = {
    "type": "object", "required": ["message"],
    "properties": {
        "message": {"type": "string", "format": "binary"},
        "policy": {"type": "string"}, "revision_id": {"type": "string"},
        "sender": _STR, "recipients": {"type": "string", "description": "comma-separated"},
        "client_ip": _STR, "client_name": _STR, "helo": _STR, "auth_user": _STR,
    },
}
FORM_FIELDS = frozenset(FORM["properties"])  # as documented


def _text(form: Any, name: str, problems: list[dict[str, Any]]) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > FIELD_MAX or "\n" in value or "\r" in value:
        problems.append({"field": name, "message": "expected one line of text"})
        return None
    return value.strip() or None


def _addresses(found: tuple[str, ...], name: str, problems: list[dict[str, Any]]) -> None:
    """As the CLI's eval and a tests: case take envelope addresses: a message tested with a
    sender that is none would meet the policies as no message ever does."""
    if not all(re.fullmatch(ADDRESS, address) for address in found):
        problems.append({"field": name, "message": "expected an address such as "
                         "user@example.com" + (" (comma-separated)" if name == "recipients"
                                               else "")})


def _envelope(form: Any, problems: list[dict[str, Any]]) -> Envelope:
    recipients = tuple(r.strip() for r in (_text(form, "recipients", problems) or "").split(",")
                       if r.strip())
    _addresses(recipients, "recipients", problems)
    sender = _text(form, "sender", problems) or ""  # "": the null sender <>
    _addresses((sender,) if sender else (), "sender", problems)
    client_ip = _text(form, "client_ip", problems)
    if client_ip is not None:
        try:  # as the CLI's eval and a tests: case read it
            client_ip = client_ip_text(client_ip)
        except ValueError:
            problems.append({"field": "client_ip", "message": "expected an IP address"})
    return Envelope(
        sender=sender,
        recipients=recipients,
        client_ip=client_ip,
        client_name=_text(form, "client_name", problems),
        helo=_text(form, "helo", problems),
        auth_user=_text(form, "auth_user", problems),
    )


def _read_fields(form: Any) -> dict[str, Any]:
    """Plain values; uploaded files read into bytes and closed (aiohttp spools them)."""
    values: dict[str, Any] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            with value.file:
                values[name] = value.file.read()
        else:
            values[name] = value
    return values


async def _sources(request: web.Request, form: dict[str, Any], problems: list[dict[str, Any]]
                   ) -> list[tuple[str, str]]:
    policy = form.get("policy")
    revision = form.get("revision_id")
    if policy is not None and revision is not None:  # one was dropped, unseen
        problems.append({"field": "revision_id", "message": "give policy or revision_id, "
                                                            "not both"})
        return []
    if policy is not None:
        try:  # strictly, as an upload is read: replaced bytes tested another policy
            text = policy.decode("utf-8") if isinstance(policy, bytes) else str(policy)
        except UnicodeDecodeError as exc:
            problems.append(not_utf8_detail("policy", policy, exc))
            return []
        return [("upload", text)]
    async with connection(request.app[POOL]) as conn:
        if revision is None:
            return await fetch_active_sources(conn)
        number = as_written(revision) if isinstance(revision, str) else None
        if number is None or not 0 < number < 2**63:
            problems.append({"field": "revision_id", "message": "expected a revision id"})
            return []
        row = await fetch_revision(conn, number)
    if row is None and problems:  # told with them, all at once
        problems.append({"field": "revision_id", "message": "no such revision"})
        return []
    if row is None:
        raise ApiError(404, "not_found", "no such revision")
    return [(f"{row['policy_name']}@r{row['id']}", row["source"])]


@routes.post("/api/v1/policies/test")
@allow(Role.OPERATOR, Role.AUDITOR)
async def policy_test(request: web.Request) -> web.Response:
    if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    check_encoding(request)
    try:
        posted = await idle_bounded(request, request.post())
        form = _read_fields(posted)
    # aiohttp raises LookupError for an unknown charset, RuntimeError for an
    # unknown Content-Transfer-Encoding of a part.
    except (ValueError, LookupError, RuntimeError):
        raise ApiError(400, "bad_request", "malformed form data") from None
    # A misspelt field would be dropped unseen: revison_id tested the active set instead.
    problems = unknown_fields(form, FORM_FIELDS) + given_twice(posted.items())
    message = form.get("message")
    if not isinstance(message, bytes):
        problems.append({"field": "message", "message": "attach the message (.eml) as a file"})
    envelope = _envelope(form, problems)
    sources = await _sources(request, form, problems)
    if problems or not isinstance(message, bytes):
        raise ValidationFailed(problems)
    if not sources:
        raise ApiError(409, "no_active_policy", "no policy is active; upload or name one")
    return json_ok(await off_loop(_verdict, sources, message, envelope))


def _verdict(sources: list[tuple[str, str]], message: bytes, envelope: Envelope
             ) -> dict[str, Any]:
    # As Postfix hands it to the milter (CRLF line ends): an .eml kept with LF line
    # ends was measured smaller (size_over, max_message_bytes) than the milter does.
    policy_set = compile_sources(sources)
    return verdict_json(evaluate_message(policy_set, as_received(message), envelope))


_VERDICT = {
    "type": "object",
    "required": ["action", "smtp_reply", "rules", "edits", "changes", "policy_hash"],
    "properties": {
        "action": _STR, "smtp_reply": {"type": ["string", "null"]},
        "quarantine_reason": {"type": ["string", "null"]},
        "rules": {"type": "array", "items": _STR},
        "edits": {"type": "array", "items": {"type": "object"}},
        "changes": {"type": "array", "items": {"type": "object"}},
        "flags": {"type": "array", "items": _STR},
        "notify": {"type": "array", "items": _STR},
        "report_only": {"type": "boolean"}, "policy_hash": _STR,
    },
}
OPENAPI_PATHS = {
    "/api/v1/policies/test": {"post": operation(
        "evaluate a policy (uploaded, a revision, or the active set) against a message",
        [Role.OPERATOR, Role.AUDITOR],
        body={"multipart/form-data": {"schema": {**FORM, "additionalProperties": False}}},
        responses={200: _VERDICT},
        # What policy_test raises, per status (a test asks the service for each).
        errors={400: ["bad_request"], 404: ["not_found"], 408: ["request_timeout"],
                409: ["no_active_policy"], 415: ["unsupported_media_type"],
                422: [VALIDATION_FAILED]},
    )},
}
