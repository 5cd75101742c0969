"""What one delivery sends, by endpoint kind.

* ``webhook``: the Standard Webhooks JSON envelope ``{type, timestamp, data}``.
* ``slack``: an incoming-webhook message ``{"text": ...}`` summarising the event,
  with Slack's control characters escaped so event data cannot ping a channel
  or forge a link.
* ``api_call``: a JSON body template and custom headers chosen by the admin.
  Template strings may hold ``{{ path }}`` placeholders (``id``, ``type``,
  ``timestamp`` or ``data.<field>``): a string that is exactly one placeholder
  takes the value itself (a list stays a list), otherwise the value is
  interpolated as text, as it always is in an object's keys. Substitution only
  looks values up; nothing is evaluated. Posted to Slack (:func:`posts_to_slack`),
  the strings filled in are escaped as the ``slack`` kind's text is: a sender or an
  attachment's name, chosen by whoever sent the mail, cannot mention ``<!channel>``
  or forge a link. The template's own text is the admin's, and kept.

Every kind carries the ``webhook-id``/``webhook-timestamp`` headers and, when
the endpoint has a secret, ``webhook-signature``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from .signing import sign_headers

MAX_TEMPLATE_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024  # of the values an api_call template is filled with
MAX_HEADERS = 20
MAX_HEADER_VALUE = 4096
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# Below data: its fields, and the keys of a send's metadata, which the client chose
# (orderId, crm-ref). Lookups read mappings only; no name may start with "_" anyway.
_PATH = re.compile(r"^(id|type|timestamp|data(\.[A-Za-z0-9][A-Za-z0-9_-]*)*)\Z")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}\Z")
# Any but HTAB: aiohttp refuses them when it sends, so every delivery would fail.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection", "upgrade",
    "te", "trailer", "keep-alive", "expect", "cookie",
})
_FORBIDDEN_PREFIXES = ("webhook-", "proxy-", "sec-")
# A Slack message lists this many of a message's recipients (or rules), then counts the
# rest: a thousand recipients made tens of thousands of characters, which Slack splits
# into several messages (past 4,000) and cuts (past 40,000).
SLACK_LIST_ITEMS = 10
# Slack's own domains (and their subdomains: hooks.slack.com), GovSlack's among them.
SLACK_DOMAINS = ("slack.com", "slack-gov.com")


class Kind(enum.StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    API_CALL = "api_call"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as the delivery worker needs it (secrets already decrypted)."""

    id: int
    name: str
    url: str = field(repr=False)  # may carry a credential (a Slack webhook's path)
    kind: Kind
    secret: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body_template: Any = None


@dataclass(frozen=True, slots=True)
class Request:
    body: bytes
    headers: dict[str, str]


def render(endpoint: Endpoint, msg_id: str, event: Mapping[str, Any]) -> Request:
    """The body and headers for ``event`` (an envelope from :func:`.events.envelope`)."""
    headers = {"content-type": "application/json"}
    if endpoint.kind is Kind.WEBHOOK:
        document: Any = event
    elif endpoint.kind is Kind.SLACK:
        document = {"text": slack_text(event)}
    else:
        headers.update(endpoint.headers)
        context = {"id": msg_id, **event}
        escape = _slack_escape if posts_to_slack(endpoint.url) else None
        document = substitute(endpoint.body_template, context, escape)
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    headers.update(sign_headers(endpoint.secret, msg_id, body))
    return Request(body, headers)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def posts_to_slack(url: str) -> bool:
    """Whether ``url`` is Slack's (an incoming webhook, the Web API): it reads
    ``<!here>`` and ``<url|text>`` in every text it is sent. A name with the root's dot
    (``hooks.slack.com.``) is the same host: aiohttp connects to it and checks Slack's
    certificate."""
    host = (URL(url).host or "").rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in SLACK_DOMAINS)


def slack_text(event: Mapping[str, Any]) -> str:
    data: Mapping[str, Any] = event.get("data", {})
    parts = [f"postwarden: {event.get('type')}"]
    # send.* name one recipient, policy.load_failed the instance that refused the set
    for label, key in (("queue id", "queue_id"), ("from", "sender"), ("to", "recipient"),
                       ("policy", "policy_name"), ("status", "status"), ("instance", "instance")):
        if data.get(key):
            parts.append(f"{label} {data[key]}")
    if data.get("recipients"):
        parts.append("to " + _slack_list(data["recipients"]))
    if data.get("rules"):
        parts.append("rules " + _slack_list(data["rules"]))
    return _slack_escape(" · ".join(parts))


def _slack_list(values: list[Any]) -> str:
    shown = ", ".join(str(value) for value in values[:SLACK_LIST_ITEMS])
    more = len(values) - SLACK_LIST_ITEMS
    return f"{shown} and {more} more" if more > 0 else shown


def _lookup(context: Mapping[str, Any], path: str) -> Any:
    value: Any = context
    for name in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_as_text(item) for item in value)
    if isinstance(value, str):
        return value
    # As JSON writes it (true, an object): str() gave Python's True and {'paid': None}.
    return json.dumps(value, ensure_ascii=False)


class BodyTooLarge(ValueError):
    """A template filled past :data:`MAX_BODY_BYTES`: a 16 KiB template may name a long
    value (a message's recipients, which a remote sender chooses) hundreds of times.
    The event's data will not shrink, so the worker marks such a delivery dead at once."""


def substitute(template: Any, context: Mapping[str, Any],
               escape: Callable[[str], str] | None = None) -> Any:
    """Fill ``{{ path }}`` placeholders in every string of ``template``, each string filled
    in passed through ``escape`` when given; raises :class:`BodyTooLarge` once the values
    filled in pass :data:`MAX_BODY_BYTES`, before the body is built."""
    return _Filler(context, escape).fill(template)


def _escaped(value: Any, escape: Callable[[str], str]) -> Any:
    """``value`` with every string in it escaped (an object's keys are no text shown)."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, list):
        return [_escaped(item, escape) for item in value]
    if isinstance(value, Mapping):
        return {key: _escaped(item, escape) for key, item in value.items()}
    return value


class _Filler:
    def __init__(self, context: Mapping[str, Any], escape: Callable[[str], str] | None
                 ) -> None:
        self._context = context
        self._escape = escape
        self._left = MAX_BODY_BYTES
        self._values: dict[str, tuple[Any, int]] = {}  # a whole placeholder's, and its size

    def _spend(self, size: int) -> None:
        self._left -= size
        if self._left < 0:
            raise BodyTooLarge(f"the body would be larger than {MAX_BODY_BYTES} bytes")

    def _value(self, path: str) -> Any:
        if path not in self._values:
            value = _lookup(self._context, path)
            if self._escape is not None:
                value = _escaped(value, self._escape)
            self._values[path] = value, len(json.dumps(value, ensure_ascii=False).encode())
        value, size = self._values[path]
        self._spend(size)
        return value

    def _text(self, path: str) -> str:
        text = _as_text(_lookup(self._context, path))
        if self._escape is not None:
            text = self._escape(text)
        self._spend(len(text.encode()))  # bytes, as the body is sent
        return text

    def _interpolated(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda m: self._text(m.group(1)), text)

    def fill(self, template: Any) -> Any:
        if isinstance(template, str):
            whole = PLACEHOLDER.fullmatch(template)
            if whole:
                return self._value(whole.group(1))
            return self._interpolated(template)
        if isinstance(template, list):
            return [self.fill(item) for item in template]
        if isinstance(template, dict):
            return self._object(template)
        return template

    def _object(self, template: Mapping[str, Any]) -> dict[str, Any]:
        """A key is text whatever it names. One filled in that names a key of the object
        already (the template's own, or one filled in before) is left out: a value, which
        a sender may choose, must not replace another field (a routing_key)."""
        own = {key for key in template if not PLACEHOLDER.search(key)}
        filled: dict[str, Any] = {}
        for key, value in template.items():
            name = self._interpolated(key)
            if name in filled or (key not in own and name in own):
                continue
            filled[name] = self.fill(value)
        return filled


def template_problems(template: Any) -> list[str]:
    """Why ``template`` is not a usable api_call body template (empty when it is)."""
    if not isinstance(template, dict | list):
        return ["body_template must be a JSON object or array"]
    if len(json.dumps(template, ensure_ascii=False).encode()) > MAX_TEMPLATE_BYTES:
        return [f"body_template is larger than {MAX_TEMPLATE_BYTES} bytes"]
    return [f"unknown placeholder {{{{ {path} }}}}" for path in _placeholders(template)
            if not _PATH.match(path)]


def _placeholders(template: Any) -> list[str]:
    if isinstance(template, str):
        return PLACEHOLDER.findall(template)
    if isinstance(template, list):
        return [p for item in template for p in _placeholders(item)]
    if isinstance(template, dict):
        return [p for key, value in template.items()
                for p in [*PLACEHOLDER.findall(key), *_placeholders(value)]]
    return []


def header_problems(headers: Any) -> list[str]:
    """Why ``headers`` are not usable custom headers (empty when they are)."""
    if not isinstance(headers, dict):
        return ["headers must be an object of names to string values"]
    if len(headers) > MAX_HEADERS:
        return [f"at most {MAX_HEADERS} headers"]
    problems = []
    seen: set[str] = set()
    for name, value in headers.items():
        # PHP, CGI and WSGI read "_" as "-" (both are HTTP_WEBHOOK_SIGNATURE), so
        # Webhook_Signature would stand in for the signature a receiver checks.
        lowered = name.lower().replace("_", "-")
        if not _TOKEN.match(name):
            problems.append(f"header name {name[:64]!r} is not a valid token")
        elif name.lower() in seen:  # one name to HTTP: only one of them would be sent
            problems.append(f"header {name!r} is given twice (names ignore case)")
        elif lowered in _FORBIDDEN_HEADERS or lowered.startswith(_FORBIDDEN_PREFIXES):
            problems.append(f"header {name!r} is set by postwarden and cannot be overridden")
        elif not isinstance(value, str) or len(value) > MAX_HEADER_VALUE:
            problems.append(f"header {name!r} needs a string value up to {MAX_HEADER_VALUE} chars")
        elif _CONTROL.search(value):
            problems.append(f"header {name!r} value contains a control character")
        seen.add(name.lower())
    return problems
