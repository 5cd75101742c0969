"""Reading request bodies and writing JSON answers the same way in every route."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import json
import math
import re
import unicodedata
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

from aiohttp import web

from .context import query_parameters
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
R = TypeVar("R")

# What the items of one page of a listing may hold, as JSON: an audit event carries up
# to 128 KiB of ``changes``, an admin log entry a whole settings change, so a count
# alone lets one page run to hundreds of MiB in memory.
PAGE_MAX_BYTES = 4 * 1024 * 1024


async def fill_page(rows: AsyncIterable[R], limit: int, render: Callable[[R], str]
                    ) -> tuple[list[str], R | None]:
    """``render(row)`` (JSON text) of the first ``limit`` rows, fewer once the next would
    take them past ``PAGE_MAX_BYTES`` (one at least, so that paging advances); and the
    last row rendered when rows remain (the next page starts after it), else None.

    ``rows`` is read only as far as needed: give it ``limit + 1`` rows, fetched a few
    at a time (an asyncpg cursor), and no more than the page is ever held.
    """
    items: list[str] = []
    size = 0
    last: R | None = None
    async for row in rows:
        if len(items) == limit:
            return items, last
        item = render(row)
        if items and size + len(item) > PAGE_MAX_BYTES:
            return items, last
        items.append(item)
        size += len(item)
        last = row
    return items, None


def json_page(name: str, items: list[str], next_name: str, next_value: object) -> web.Response:
    """``{name: [...], next_name: next_value}`` from items already JSON text (see
    :func:`fill_page`, which measured them so): no page is encoded twice."""
    text = f'{{{dumps(name)}: [{",".join(items)}], {dumps(next_name)}: {dumps(next_value)}}}'
    return web.Response(text=text, content_type="application/json")


# Past this size a body's work (JSON parsing, digests, base64) runs on a worker
# thread: tens of milliseconds on the event loop would stall every other request.
LARGE_BODY_BYTES = 256 * 1024
BODY_IDLE_SECONDS = 60.0  # nginx's client_body_timeout
BODY_MIN_RATE = 10 * 1024  # bytes a second a body must keep up, on the whole
MAX_BODY_WITHOUT_LENGTH = 1024 * 1024  # what a chunked body is given time for
MAX_JSON_DEPTH = 64  # the policy loader allows 32 levels of conditions, wrapped
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def is_large(raw: bytes) -> bool:
    return len(raw) > LARGE_BODY_BYTES


async def run_sized(large: bool, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(...)``: on a worker thread when ``large``, else here on the loop."""
    if large:
        return await asyncio.to_thread(func, *args, **kwargs)
    return func(*args, **kwargs)


# The Content-Encodings aiohttp decodes (br and zstd only with their modules installed:
# without, its parser refuses them itself). It hands any other (x-gzip, compress, a list
# such as "gzip, identity") on as it came, which was then read as the body itself:
# compressed JSON as 400 "not UTF-8", a stray label taken for none.
DECODED_ENCODINGS = frozenset({"gzip", "deflate", "br", "zstd"})
ACCEPTED_ENCODINGS = "gzip, deflate"  # what an Accept-Encoding header offers clients


def check_encoding(request: web.Request) -> None:
    """415 ``unsupported_media_type`` (RFC 9110 15.5.16, with ``Accept-Encoding``) for
    a body in a Content-Encoding that is not decoded, before any of it is read."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity") or encoding in DECODED_ENCODINGS:
        return
    raise ApiError(415, "unsupported_media_type",
                   f"the body's Content-Encoding {encoding[:40]!r} is not decoded here: "
                   f"send it uncompressed, or as one of {ACCEPTED_ENCODINGS}",
                   headers={"Accept-Encoding": ACCEPTED_ENCODINGS})


async def read_body(request: web.Request) -> bytes:
    """``request.read()``, within :func:`idle_bounded` unless the whole body is in
    already (most are: one packet), which saves a task per request."""
    check_encoding(request)
    if request.content.is_eof():
        return await request.read()
    return await idle_bounded(request, request.read())


async def idle_bounded(request: web.Request, reading: Awaitable[T]) -> T:
    """``reading`` (of the request body); 408 ``request_timeout`` once the client sends
    nothing for ``BODY_IDLE_SECONDS``, or has not sent it all by then plus a second per
    ``BODY_MIN_RATE`` bytes announced. aiohttp has no such limit: a body that stops
    arriving, or trickles a byte a minute, would hold its connection and handler for
    ever (slowloris)."""
    task = asyncio.ensure_future(reading)
    received = request.content.total_bytes
    loop = asyncio.get_running_loop()
    announced = request.content_length or MAX_BODY_WITHOUT_LENGTH
    deadline = loop.time() + BODY_IDLE_SECONDS + announced / BODY_MIN_RATE
    try:
        while True:
            left = deadline - loop.time()
            done, _ = await asyncio.wait({task}, timeout=max(0.0, min(BODY_IDLE_SECONDS, left)))
            if done:
                return task.result()
            if request.content.total_bytes == received or loop.time() >= deadline:
                raise ApiError(408, "request_timeout", "the request body did not arrive "
                               f"in time (nothing for {BODY_IDLE_SECONDS:g} seconds, or "
                               f"slower than {BODY_MIN_RATE} bytes a second)")
            received = request.content.total_bytes
    finally:
        task.cancel()  # a no-op once read; else nobody waits for it any more


def _declared_json(request: web.Request) -> bool:
    """The body is declared JSON: ``application/json`` or a ``+json`` type (RFC 6839),
    any parameter (a charset) aside. aiohttp reads a missing type as octet-stream."""
    media_type = request.content_type  # lower case, without parameters
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json"))


# The charset labels of UTF-8 clients send (utf8 is the WHATWG Encoding Standard's too),
# and ASCII, a part of it.
UTF8_LABELS = frozenset({"utf-8", "utf8", "us-ascii"})


def check_utf8(request: web.Request, why: str) -> None:
    """415 ``unsupported_media_type`` (unread) for a body declared in another charset than
    UTF-8, which is all it is read as (``why``)."""
    if (request.charset or "utf-8").lower() not in UTF8_LABELS:  # aiohttp unquotes it
        raise ApiError(415, "unsupported_media_type",
                       f"the body must be UTF-8, {why}: send it with charset=utf-8 or no "
                       "charset")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 400 ``invalid_json`` otherwise, 415
    ``unsupported_media_type`` (unread) if it is not declared JSON, or declared in
    another charset than UTF-8, as the routes taking YAML or form data refuse what
    they do not read."""
    if not _declared_json(request):
        raise ApiError(415, "unsupported_media_type",
                       "send the body as JSON, with Content-Type: application/json")
    check_utf8(request, "as JSON is (RFC 8259)")
    raw = await read_body(request)
    return await run_sized(is_large(raw), _json_object, raw)


def _json_object(raw: bytes) -> dict[str, Any]:
    """Parse and check ``raw``: every pass over a large body runs off the event loop."""
    try:
        # Strict UTF-8 (a BOM aside): json.loads would take UTF-16 and UTF-32 too, and
        # UTF-8 encoded surrogates, past the checks on ``raw`` below.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "request body is not UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_non_finite, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except ValueError:
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    # No route takes deeper documents, and YAML dumping (managed rules) recurses.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "invalid_json", "request body is nested too deeply")
    # A NUL or a lone surrogate (\ud800-\udfff) is no text any field takes:
    # Postgres refuses both, the email package the latter. JSON carries either
    # only as a \u escape, so only a body with such an escape is searched.
    if _SUSPECT_ESCAPE.search(raw) and not _storable(data):
        raise ApiError(400, "invalid_json", "request body holds a NUL (\\u0000) or a lone "
                       "surrogate (\\ud800-\\udfff), which no field takes")
    return data


# Characters no text shows: controls (Cc, C0 and C1: a tab too, which shows as any
# width), the invisible and bidi format characters (Cf: U+200B, U+202E, U+2066..2069,
# U+FEFF...) and the line and paragraph separators. A terminal acts on an escape
# sequence; one of the others hides or reorders what a text is read as. Refused in the
# free text a client stores for others to read (a key's name, a revision's comment, a
# suppression's detail).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})
HIDDEN_REFUSED = "control, invisible and bidi characters are not allowed"


def is_hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN


def has_hidden(text: str) -> bool:
    return any(map(is_hidden, text))


def blank_as_none(text: str | None) -> str | None:
    """A free text (a comment, a detail) as stored: None for an empty or blank one, which
    says nothing (it was stored and listed as "", beside the null of one left out)."""
    return text if text is not None and text.strip() else None


SHOWN_KEY = 80  # characters of a duplicate key, or another value, given back


def shown(value: str) -> str:
    """A value the client gave, quoted as an error gives it back: its first SHOWN_KEY
    characters (a path or body may hold a million)."""
    return repr(value[:SHOWN_KEY])


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if it names a key twice: json.loads keeps the last, and a
    gateway reading the first (``to``, say) would see another request."""
    data = dict(pairs)
    if len(data) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ApiError(400, "invalid_json",
                               f"request body has a duplicate key {shown(key)}")
            seen.add(key)
    return data


# Python's json reads NaN, Infinity and -Infinity (and 1e999 as inf), none of
# them JSON: jsonb refuses them (a 500) and json.dumps writes them back as is.
_NON_FINITE = "request body holds NaN, Infinity or a number too large for a float"


def _non_finite(literal: str) -> float:
    raise ApiError(400, "invalid_json", _NON_FINITE)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ApiError(400, "invalid_json", _NON_FINITE)
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (without recursing)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


# Unknown fields named in a 422; any more are counted in one last entry.
MAX_UNKNOWN_LISTED = 20


def unknown_names(data: Iterable[str], known: Collection[str]) -> tuple[list[str], int]:
    """The names in ``data`` not in ``known`` to list (the first MAX_UNKNOWN_LISTED, sorted,
    cut to SHOWN_KEY characters), and how many more there are: a body of a million keys
    was answered in 51 MB, sorted and written on the event loop."""
    unknown = (name for name in dict.fromkeys(data) if name not in known)  # form data: once
    listed = sorted(itertools.islice(unknown, MAX_UNKNOWN_LISTED))
    return [name[:SHOWN_KEY] for name in listed], sum(1 for _ in unknown)


def more_unknown(more: int) -> str:
    return f"{more} more unknown fields"


def unknown_fields(data: Mapping[str, Any], known: Collection[str]) -> list[dict[str, Any]]:
    """A problem for each field of ``data`` not in ``known`` (:func:`unknown_names`), by
    name, then one counting those not named: a misspelt optional field would otherwise
    be dropped unseen."""
    listed, more = unknown_names(data, known)
    problems: list[dict[str, Any]] = [
        {"field": name, "message": "unknown field"} for name in listed]
    if more:
        problems.append({"message": more_unknown(more), "more": more})
    return problems


def given_twice(items: Iterable[tuple[str, object]]) -> list[dict[str, Any]]:
    """A problem for each name given more than once in ``items`` (a query's or a form's,
    every value): no route takes a list so, and which copy counts would be a guess (the
    first of status=queued&status=bogus filtered on queued, said nothing)."""
    counts = collections.Counter(name for name, _ in items)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    return [{"field": name, "message": "given more than once"} for name in repeated]


def unknown_parameters(query: Mapping[str, str], known: Collection[str]
                       ) -> list[dict[str, Any]]:
    """A problem for each query parameter not in ``known``."""
    expected = f"expected one of {', '.join(known)}" if known else "this route takes none"
    return [{"field": name, "message": f"unknown parameter; {expected}"}
            for name in dict.fromkeys(query) if name not in known]


def no_parameters(request: web.Request) -> ValidationFailed:
    """422 naming each query parameter of a change, which takes its values in the body:
    one sent in the URL (rotate?grace_seconds=0, rollback?revision_id=5, an
    idempotency_key for send-email) was dropped, and the change made without it (the
    leaked key left working for the default day)."""
    return ValidationFailed([{"field": name, "message": "unknown parameter; a change "
                              "takes its values in the body"} for name in request.query])


def decimal(text: str) -> int | None:
    """``text`` as a whole number written in ASCII digits alone, else None: int() also
    takes "+5", " 5", "1_0" and digits of other scripts (a fullwidth one), which no client means."""
    if not (text.isascii() and text.isdigit()) or len(text) > 30:
        return None
    return int(text)


def as_written(text: str) -> int | None:
    """``text`` as :func:`decimal` reads it when written as the service writes a number:
    without a leading zero (``007`` is 7 written otherwise, as ``+7`` is), else None."""
    value = decimal(text)
    return value if value is not None and str(value) == text else None


LEADING_ZERO = ", written without a leading zero"


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """A number in the query, written as a path's id must be (:func:`path_int`):
    ``limit=010`` and ``before=007`` were read as 10 and 7 where ``/revisions/007`` was
    not found."""
    raw = request.query.get(name)
    if raw is None:
        return default
    value = as_written(raw)
    if value is None or not low <= value <= high:
        zeroed = value is None and decimal(raw) is not None
        expected = f"expected {low}..{high}{LEADING_ZERO if zeroed else ''}"
        raise ValidationFailed([{"field": name, "message": expected}])
    return value


# Python's datetime and Postgres's timestamptz end at year 9999: a time near
# either end overflows once converted to UTC (or a day is taken from it).
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
TIME_EXPECTED = "expected an ISO 8601 time between 1900 and 9000"
# What a query parameter that reads right once its spaces are "+" is refused with.
PLUS_AS_SPACE = "(write + as %2B in a URL)"


def parse_time(raw: str) -> dt.datetime:
    """An ISO 8601 time ("Z" allowed, or "z" as RFC 3339 allows; naive means UTC) within
    EARLIEST..LATEST; ValueError otherwise."""
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if not EARLIEST <= value <= LATEST:  # aware comparisons never overflow
        raise ValueError("time out of range")
    return value


def time_expected(raw: str) -> str:
    """TIME_EXPECTED, with a hint when ``raw`` is a time once its last space is a "+":
    a query string's unencoded "+" (of an offset) arrives as a space. Such a time is
    refused, not read as meant: the client's URLs lose every other "+" too (an address
    filter's ``a+tag@b``), and only the hint gets those right as well."""
    head, space, tail = raw.rpartition(" ")
    if space:
        try:
            parse_time(f"{head}+{tail}")
        except ValueError:
            return TIME_EXPECTED
        return f"{TIME_EXPECTED} {PLUS_AS_SPACE}"
    return TIME_EXPECTED


def query_time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        raise ValidationFailed([{"field": name, "message": time_expected(raw)}]) from None


class QueryProblems:
    """Query parameters read so that one 422 lists every bad one, not the first, and
    every one the handler does not read (context.reads_query): :meth:`read` gives None
    for a bad one and keeps its problem."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        declared = query_parameters(request.match_info.handler)
        self.found: list[dict[str, Any]] = unknown_parameters(request.query, declared.names)

    def read(self, parse: Callable[..., T], *args: Any) -> T | None:
        """``parse(request, *args)`` (query_int, query_time...), None if it refused."""
        try:
            return parse(self.request, *args)
        except ValidationFailed as failed:
            self.found.extend(failed.details)
            return None

    def raise_any(self) -> None:
        if self.found:
            raise ValidationFailed(self.found)


def path_int(request: web.Request, name: str) -> int:
    """An id in a path, written as the service writes it: ``00001`` is no resource's path,
    as ``+1`` is not (one resource, one URL: a cache or an audit trail keys on it)."""
    value = as_written(request.match_info[name])
    if value is None or not 0 < value < 2**63:
        raise ApiError(404, "not_found", "no such resource")
    return value


# A UUID as RFC 9562 writes it: 8-4-4-4-12 hex digits, in either case ("case insensitive
# on input"). uuid.UUID() also reads braces, a urn:uuid: prefix and hyphens anywhere or
# none: many URLs of one resource.
_UUID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.IGNORECASE)


def path_uuid(request: web.Request, name: str, missing: str) -> uuid.UUID:
    """A UUID in a path, written as the service writes it (:func:`path_int`'s reason);
    404 ``not_found`` saying ``missing`` otherwise."""
    text = request.match_info[name]
    if not _UUID.fullmatch(text):
        raise ApiError(404, "not_found", missing)
    return uuid.UUID(text)
