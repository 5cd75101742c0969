"""Optimistic concurrency: an answer carries what it shows as an ``ETag``; a change sent
with it as ``If-Match`` is refused 412 ``precondition_failed`` once another change made
it stale, rather than silently undoing that change. Without If-Match a change applies to
whatever is current.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from aiohttp import hdrs, web

from .errors import ApiError


def quoted(value: object) -> str:
    """An entity tag (RFC 9110 8.8.3): the value, quoted."""
    return f'"{value}"'


def digest_tag(resource: str, parts: Iterable[object]) -> str:
    """A tag of ``resource``'s state read as ``parts`` (rows, in a fixed order): any change
    changes it. The resource's name goes in too: two empty states (no settings stored, no
    policy active) would share a tag, and one's tag pass the other's If-Match."""
    digest = hashlib.sha256("\x00".join([resource, *map(repr, parts)]).encode()).hexdigest()
    return quoted(digest[:32])


def require_match(request: web.Request, current: str, message: str, now: str, *,
                  exists: bool = True) -> None:
    """412 unless If-Match (when sent) names ``current`` (or is ``*`` while the state
    ``exists``, not the empty state's tag): the client read another state, and would undo
    what changed since. ``message`` says what changed; ``now``, in details, what is current."""
    sent = request.headers.getall(hdrs.IF_MATCH, [])
    if not sent:
        return
    tags = _entity_tags(sent)
    if current in tags or (exists and "*" in tags):
        return
    raise ApiError(412, "precondition_failed", message, [{"field": "If-Match", "message": now}])


# An entity tag (RFC 9110 8.8.3), weak or strong, or "*"; a weak one never matches (If-Match
# compares strongly), but it is one.
_ENTITY_TAG = re.compile(r'\*|(?:W/)?"[^"\x00-\x20\x7f]*"')


def _entity_tags(sent: list[str]) -> set[str]:
    """The tags of If-Match's ``sent`` values (a list's empty elements left out, RFC 9110
    5.6.1); 400 ``bad_request`` for one that is no entity tag (``If-Match: 5``, unquoted,
    or empty): it was 412, "another change ... since", when none had been made."""
    tags = {tag.strip() for value in sent for tag in value.split(",")} - {""}
    if tags and all(map(_ENTITY_TAG.fullmatch, tags)):
        return tags
    raise ApiError(400, "bad_request", "If-Match holds something other than entity tags",
                   [{"field": "If-Match", "message": 'expected the ETag as given, quotes '
                     'and all ("5", not 5), or *'}])
