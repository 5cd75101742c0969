"""Reading request bodies and writing JSON answers the same way in every route."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from aiohttp import web

from .errors import ApiError, ValidationFailed


def _default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(data: object) -> str:
    return json.dumps(data, default=_default)


def json_ok(data: object, status: int = 200, headers: Mapping[str, str] | None = None
            ) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


T = TypeVar("T")
P = ParamSpec("P")

# Past this size a body's work (JSON parsing, digests, base64) runs on a worker
# thread: tens of milliseconds on the event loop would stall every other request.
LARGE_BODY_BYTES = 256 * 1024
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def is_large(raw: bytes) -> bool:
    return len(raw) > LARGE_BODY_BYTES


async def run_sized(large: bool, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(...)``: on a worker thread when ``large``, else here on the loop."""
    if large:
        return await asyncio.to_thread(func, *args, **kwargs)
    return func(*args, **kwargs)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 400 ``invalid_json`` otherwise."""
    raw = await request.read()
    try:
        data = await run_sized(is_large(raw), json.loads, raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    # JSON's \ud800-\udfff escapes decode to lone surrogates, which no encoder
    # (Postgres's, the email package's) takes; only such a body is searched.
    if _SURROGATE_ESCAPE.search(raw) and not _encodable(data):
        raise ApiError(400, "invalid_json",
                       "request body holds a \\u escape of a lone surrogate, not a character")
    return data


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(item) for item in value)
    return True


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValidationFailed([{"field": name, "message": f"expected {low}..{high}"}])
    return value


def query_time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            [{"field": name, "message": "expected an ISO 8601 time"}]
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def path_int(request: web.Request, name: str) -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise ApiError(404, "not_found", "no such resource") from None
    if not 0 < value < 2**63:
        raise ApiError(404, "not_found", "no such resource")
    return value
