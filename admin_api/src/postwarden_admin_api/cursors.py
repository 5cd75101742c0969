"""Keyset cursors of the paginated searches (audit events, sent messages).

A page ends at its last row's ``(time, id)``; the next page starts after it.
The cursor is that pair as unpadded base64url JSON: opaque, and free of the
``+``, ``/`` and ``=`` that a client pasting it into a query string as given
would have turned into something else (a ``+`` reads as a space).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from dataclasses import dataclass

from aiohttp import web

from .bodies import parse_time
from .errors import ValidationFailed


@dataclass(frozen=True, slots=True)
class Cursor:
    time: dt.datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps([self.time.isoformat(), str(self.id)]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            when, ident = json.loads(raw)
            if not isinstance(when, str) or not isinstance(ident, str):
                raise TypeError("not a cursor")
            return cls(parse_time(when), uuid.UUID(ident))
        except (ValueError, TypeError, RecursionError, binascii.Error):
            raise ValidationFailed([{"field": "cursor", "message": "invalid cursor"}]) from None


def query_cursor(request: web.Request) -> Cursor | None:
    """The ``cursor`` query parameter; None when absent or empty (the first page)."""
    raw = request.query.get("cursor")
    return Cursor.decode(raw) if raw else None
