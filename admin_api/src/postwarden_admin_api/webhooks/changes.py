"""Checking a webhook endpoint's create or change, and the columns it leaves.

Every problem of a request is listed in one answer, a URL the SSRF guard refuses on
its face among them (then the code is ``url_not_allowed``). Write-only values (the
URL, the signing secret, an api_call's headers and body template) stay bound to what
they were given for: a new URL needs the headers (or ``null``) and the body template
given again, else they would go wherever an operator points the endpoint; a new kind
or body template needs the URL, and the secret and headers when set, else an operator
who never learned them could make them carry a body of their choosing (signed JSON, a
post to a Slack URL). See :func:`_given_again`. ``send_keys`` (null: every key) limits
the ``send.*`` events to messages of those API keys' rotation lines; each must name a
stored key (:func:`key_problems`), else the filter would let nothing through unnoticed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
from aiohttp import web
from yarl import URL

from postwarden_admin_api.bodies import unknown_fields
from postwarden_admin_api.errors import ApiError, ValidationFailed
from postwarden_admin_api.secrets import KEYRING

from .events import SUBSCRIBABLE
from .options import WEBHOOK_OPTIONS
from .payloads import Kind, header_problems, template_problems
from .signing import SignatureError, secret_key
from .ssrf import UrlRefused
from .templates import sealed
from .urls import origin

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
MAX_URL = 2048
MASK_GIVEN_BACK = ("{\"is_set\": ...} is how a stored template is shown: send the template "
                   "itself, or leave body_template out to keep the one stored")
FIELDS = frozenset({"name", "url", "kind", "events", "secret", "headers", "body_template",
                    "enabled", "send_keys"})
MAX_SEND_KEYS = 100
MAX_KEY_ID = 64
UNKNOWN_KEYS = """
SELECT k FROM unnest($1::text[]) k WHERE NOT EXISTS (SELECT FROM api_keys WHERE key_id = k)
ORDER BY k
"""
KINDS = [kind.value for kind in Kind]  # a list: `in` must not hash a field value ([] or {})


def _url_problems(request: web.Request, data: Mapping[str, Any]
                  ) -> tuple[URL | None, list[dict[str, Any]]]:
    """The new URL parsed, or why it is refused (a guard refusal carries its ``reason``)."""
    if "url" not in data:
        return None, []
    url = data["url"]
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return None, [{"field": "url", "message": f"expected 1..{MAX_URL} characters"}]
    try:
        return request.app[WEBHOOK_OPTIONS].guard.check_url(url), []
    except UrlRefused as refused:
        return None, [{"field": "url", "reason": refused.reason.value,
                       "message": refused.detail}]


def _send_keys(data: Mapping[str, Any]) -> list[str] | None:
    """The key ids of a well-formed ``send_keys`` given, else None (null, absent or bad)."""
    keys = data.get("send_keys")
    if not isinstance(keys, list) or not 0 < len(keys) <= MAX_SEND_KEYS or not all(
        isinstance(k, str) and 0 < len(k) <= MAX_KEY_ID for k in keys
    ):
        return None
    return sorted(set(keys))


async def key_problems(conn: asyncpg.Connection, data: Mapping[str, Any]
                       ) -> list[dict[str, Any]]:
    """``send_keys`` naming a key that is not stored (a filter no event would pass)."""
    keys = _send_keys(data)
    if keys is None:
        return []  # none given, or a field problem already
    unknown = [row[0] for row in await conn.fetch(UNKNOWN_KEYS, keys)]
    if not unknown:
        return []
    return [{"field": "send_keys", "message": "no such API key: " + ", ".join(unknown)}]


def _refused(problems: list[dict[str, Any]]) -> ApiError:
    """Every problem in one answer; url_not_allowed when the guard refused the URL."""
    if any("reason" in problem for problem in problems):
        return ApiError(422, "url_not_allowed", "the URL is not allowed as a webhook target",
                        details=problems)
    return ValidationFailed(problems)


def _field_problems(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Problems with each field given, on its own."""
    problems = unknown_fields(data, FIELDS)
    if "name" in data and not (isinstance(data["name"], str) and NAME.match(data["name"])):
        problems.append({"field": "name", "message": "expected 1..64 of A-Z a-z 0-9 _ . -"})
    if "kind" in data and data["kind"] not in KINDS:
        problems.append({"field": "kind", "message": "expected webhook, slack or api_call"})
    events = data.get("events", [])
    if not isinstance(events, list) or not all(
        isinstance(e, str) and e in SUBSCRIBABLE for e in events
    ):
        problems.append({"field": "events", "message": "expected a list of event types: "
                         + ", ".join(sorted(SUBSCRIBABLE))})
    if "enabled" in data and not isinstance(data["enabled"], bool):
        problems.append({"field": "enabled", "message": "expected true or false"})
    if data.get("send_keys") is not None and _send_keys(data) is None:
        problems.append({"field": "send_keys", "message": "expected null (every key) or a list"
                         f" of 1..{MAX_SEND_KEYS} API key ids"})
    secret = data.get("secret")
    if secret is not None:
        try:
            secret_key(secret if isinstance(secret, str) else "")
        except SignatureError as exc:
            problems.append({"field": "secret", "message": str(exc)})
    if data.get("headers") is not None:
        problems += [{"field": "headers", "message": m} for m in header_problems(data["headers"])]
    template = data.get("body_template")
    if _shown_mask(template):
        problems.append({"field": "body_template", "message": MASK_GIVEN_BACK})
    elif template is not None:
        problems += [{"field": "body_template", "message": m}
                     for m in template_problems(template)]
    return problems


def _shown_mask(template: Any) -> bool:
    """Whether ``template`` is the ``{"is_set": ...}`` the service shows in a template's
    place: a client that sends back what it read (GET, edit, PATCH) would otherwise
    have it stored as the template, a valid JSON object, and post it."""
    return (isinstance(template, dict) and template.keys() == {"is_set"}
            and isinstance(template["is_set"], bool))


def _is_set(current: Mapping[str, Any], field: str) -> bool:
    """Whether the write-only ``field`` (url, secret, headers, body_template) holds a
    value; a url or body_template stored before it was sealed is in its plain column."""
    return current[f"{field}_ciphertext"] is not None or current.get(field) is not None


def _sends_other_content(data: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether ``data`` changes what a delivery sends: the kind or the body template.
    A template given counts even if it is the stored one: it is write-only, and telling
    the two apart would confirm a guess of it (of the credential it holds)."""
    kind = data.get("kind", current["kind"])
    if kind != current["kind"]:
        return kind in KINDS  # an unknown kind is a field problem, not a change
    return "body_template" in data and (data["body_template"] is not None
                                        or _is_set(current, "body_template"))


def _given_again(data: Mapping[str, Any], current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Write-only values were given for one receiver and one content; an operator who
    never learned them must not keep them for another. Headers and a template (its
    routing_key) set for one URL would be sent to a new one (an operator's own server);
    the URL (a Slack webhook's path, a token in the query), the secret (the signature a
    receiver trusts) and the headers (an Authorization token) must not authorize a body
    of the operator's choosing (a new kind, a new template): such changes need them
    given again (or null)."""
    wanted: dict[str, str] = {}
    if "url" in data:
        wanted["headers"] = ("a new url needs the headers given again (or null): they were"
                             " set for the old one")
        # It may hold a credential too (PagerDuty's routing_key): write-only for that.
        wanted["body_template"] = ("a new url needs the body_template given again: it was"
                                   " set for the old one")
    if _sends_other_content(data, current):
        for field in ("url", "secret", "headers"):
            wanted.setdefault(field, f"a new kind or body_template needs the {field} given"
                              f" again{'' if field == 'url' else ' (or null)'}: it was set"
                              " for what the endpoint sent before")
    if data.get("kind", current["kind"]) != Kind.API_CALL:
        for field in ("headers", "body_template"):  # only api_call sends them:
            wanted.pop(field, None)  # _kind_problems wants null
    return [{"field": field, "message": message} for field, message in wanted.items()
            if field not in data and _is_set(current, field)]


def _kind_problems(data: Mapping[str, Any], current: Mapping[str, Any]
                   ) -> list[dict[str, Any]]:
    """Problems of the endpoint as a whole, once the change is applied."""
    kind = data.get("kind", current["kind"])
    if kind not in KINDS:
        return []  # a field problem already
    secret_set, headers_set = (data[f] is not None if f in data else _is_set(current, f)
                               for f in ("secret", "headers"))
    template_set = (data["body_template"] is not None if "body_template" in data
                    else _is_set(current, "body_template"))
    problems = []
    if kind == Kind.WEBHOOK and not secret_set:
        problems.append({"field": "secret", "message": "a webhook endpoint needs a secret"})
    if kind == Kind.API_CALL and not template_set:
        problems.append({"field": "body_template", "message": "an api_call needs a template"})
    if kind != Kind.API_CALL:
        for name, is_set in (("headers", headers_set), ("body_template", template_set)):
            if is_set:
                problems.append({"field": name, "message": "only api_call endpoints have this"})
    return problems


def merged(request: web.Request, data: Mapping[str, Any], current: Mapping[str, Any],
            found: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """The endpoint's columns after applying ``data`` to ``current``; every problem of the
    request (and those ``found`` by the caller: fields missing, keys not stored) is refused
    in one answer."""
    parsed, url_problems = _url_problems(request, data)
    problems = [*found, *url_problems, *_field_problems(data), *_given_again(data, current),
                *_kind_problems(data, current)]
    if problems:
        raise _refused(problems)
    keyring = request.app[KEYRING]
    row = {key: current[key] for key in ("name", "url", "url_ciphertext", "url_origin", "kind",
                                          "enabled", "secret_ciphertext", "headers_ciphertext",
                                          "body_template", "body_template_ciphertext",
                                          "send_keys")}
    row["events"] = sorted(set(data.get("events", current["events"])))
    if "send_keys" in data:
        row["send_keys"] = _send_keys(data)
    row.update({key: data[key] for key in ("name", "kind", "enabled") if key in data})
    if parsed is not None:
        row.update(url=None, url_ciphertext=keyring.encrypt(data["url"]),
                   url_origin=origin(parsed))
    if "secret" in data:
        secret = data["secret"]
        row["secret_ciphertext"] = None if secret is None else keyring.encrypt(secret)
    if "headers" in data:
        headers = data["headers"]
        row["headers_ciphertext"] = (
            None if headers is None else keyring.encrypt(json.dumps(headers))
        )
    if "body_template" in data:
        row.update(body_template=None,
                   body_template_ciphertext=sealed(data["body_template"], keyring))
    return row


NEW_ENDPOINT: dict[str, Any] = {
    "name": None, "url": None, "url_ciphertext": None, "url_origin": None,
    "kind": Kind.WEBHOOK.value, "events": [], "enabled": True, "body_template": None,
    "body_template_ciphertext": None, "secret_ciphertext": None, "headers_ciphertext": None,
    "send_keys": None,
}
