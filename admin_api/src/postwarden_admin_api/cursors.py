"""Keyset cursors of the paginated searches (audit events, sent messages).

A page ends at its last row's ``(time, id)``; the next page starts after it.
The cursor is that pair, and the scope of the search it pages, as unpadded
base64url JSON: opaque, and free of the ``+``, ``/`` and ``=`` that a client
pasting it into a query string as given would have turned into something else
(a ``+`` reads as a space).

The scope (:func:`scope`) is a short hash of the route and its filters, as parsed:
a cursor sent back with other filters, or to another search, would start partway
through a result it was never part of, and is refused (422 ``cursor_mismatch``).
A cursor without one (from a version before scopes) is taken as before: a client
paging across an upgrade goes on, and such a cursor is no worse than it always was.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .bodies import parse_time
from .errors import ApiError, ValidationFailed


@dataclass(frozen=True, slots=True)
class Cursor:
    time: dt.datetime
    id: uuid.UUID
    scope: str | None = None  # what it pages (scope()); None: from before scopes, or internal

    def encode(self) -> str:
        fields = [self.time.isoformat(), str(self.id)]
        if self.scope is not None:
            fields.append(self.scope)
        return _b64(json.dumps(fields).encode())

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            fields = json.loads(raw)
            if not isinstance(fields, list):  # an object's keys, a string's letters unpack too
                raise TypeError("not a cursor")
            when, ident, *bound = fields
            if not all(isinstance(f, str) for f in (when, ident, *bound)) or len(bound) > 1:
                raise TypeError("not a cursor")
            return cls(parse_time(when), uuid.UUID(ident), bound[0] if bound else None)
        except (ValueError, TypeError, RecursionError, binascii.Error):
            raise ValidationFailed([{"field": "cursor", "message": "invalid cursor"}]) from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def scope(route: str, filters: Mapping[str, Any]) -> str:
    """What a cursor pages: the route and its filters as parsed (an instant in UTC,
    an address as matched), so that the same search written otherwise
    (``+01:00`` for ``Z``) is the same scope. A hash, not the filters: the cursor
    stays short, and carries no addresses a client did not ask for."""
    shown = sorted((name, _normal(value)) for name, value in filters.items()
                   if value is not None)
    return _b64(hashlib.sha256(json.dumps([route, shown]).encode()).digest()[:12])


def _normal(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


def query_cursor(request: web.Request) -> Cursor | None:
    """The ``cursor`` query parameter; None when absent or empty (the first page)."""
    raw = request.query.get("cursor")
    return Cursor.decode(raw) if raw else None


def check_scope(cursor: Cursor | None, expected: str) -> None:
    """Refuse a cursor handed out by another search (other filters, another route)."""
    if cursor is not None and cursor.scope is not None and cursor.scope != expected:
        raise ApiError(422, "cursor_mismatch",
                       "the cursor belongs to another search: send it back with the "
                       "filters of the page that gave it, or leave it out to start over",
                       [{"field": "cursor", "message": "from a search with other filters"}])
