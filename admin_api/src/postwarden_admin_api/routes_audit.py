"""Audit search, one event, streaming export, dashboard stats and the admin log."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import io
import json
import logging
import re
import zoneinfo
from typing import Any

import asyncpg
from aiohttp import hdrs, web

from . import admin_audit
from .audit_queries import (
    ACTIONS,
    FILTERS,
    SELECT_ONE,
    STATS_SERIES,
    STATS_TOP_RULES,
    bucket_starts,
    database_now,
    event_json,
    parse_filters,
    range_problem,
    reading,
    search_rows,
)
from .bodies import (
    QueryProblems,
    dumps,
    fill_page,
    json_ok,
    json_page,
    path_uuid,
    query_int,
    query_time,
)
from .context import POOL, Role, allow, principal, reads_query
from .cursors import Cursor, check_scope, query_cursor, scope
from .errors import ApiError, ValidationFailed
from .httpserver import ended_if_client_leaves
from .keys import is_live
from .openapi import VALIDATION_FAILED, header, operation, param, ref

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
EXPORT_BATCH = 500
EXPORT_WRITE_TIMEOUT = 60.0  # seconds a client has to take in one page of an export
CSV_FIELDS = ("event_id", "time", "instance", "queue_id", "message_uid", "client_address",
              "client_name", "helo", "auth_user", "sender", "recipients", "header_from",
              "message_id", "subject", "size", "action", "smtp_reply", "rules", "changes",
              "policy_hash", "duration_ms", "flags", "notify")


@routes.get("/api/v1/audit")
@allow(Role.AUDITOR)
@reads_query(*FILTERS, "limit", "cursor", listed=True)
async def audit_search(request: web.Request) -> web.Response:
    query = QueryProblems(request)
    limit = query.read(query_int, "limit", 100, 1, 1000)
    cursor = query.read(query_cursor)
    filters = parse_filters(request.query, query.found)
    assert limit is not None  # noqa: S101 - a bad one was raised above
    searched = scope(request.path, filters)
    check_scope(cursor, searched)
    async with ended_if_client_leaves(request), reading(request.app[POOL]) as conn:
        rows = search_rows(conn, filters, cursor, limit + 1)
        events, last = await fill_page(rows, limit, _event_text)
    next_cursor = None if last is None else _after(last, searched).encode()
    return json_page("events", events, "next_cursor", next_cursor)


def _event_text(row: asyncpg.Record) -> str:
    return dumps(event_json(row))


def _after(row: asyncpg.Record, searched: str | None = None) -> Cursor:
    """The cursor of the page that follows ``row``, in the search ``searched`` (scope())."""
    return Cursor(row["time"], row["event_id"], searched)


@routes.get("/api/v1/audit/export")
@allow(Role.AUDITOR)
@reads_query(*FILTERS, "format", listed=True)
async def audit_export(request: web.Request) -> web.StreamResponse:
    query = QueryProblems(request)
    kind = query.read(_export_format)
    filters = parse_filters(request.query, query.found)
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-ndjson" if kind == "ndjson" else "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="audit.{kind}"',
    })
    if request.method == hdrs.METH_HEAD:
        # Headers only (RFC 9110, 9.3.2): aiohttp writes what it is given, and the
        # events sent after them were read as the connection's next answer. Nor is the
        # first page read for none of it to be sent: a HEAD is a check of the route.
        await response.prepare(request)
        return response
    # Before the 200: a busy pool is a 503, an event that cannot be rendered a 500.
    lines, last = await _export_page(request, filters, None)
    await response.prepare(request)
    head = [_csv_line(CSV_FIELDS)] if kind == "csv" else []
    sent = 0
    try:
        while True:  # one page in memory at a time: PAGE_MAX_BYTES of lines, or one event
            if not await _send(request, response, head + lines, last is None) or last is None:
                return response
            sent += len(lines)
            head = []
            lines.clear()  # the page is out: not held while the next one is read
            lines, last = await _export_page(request, filters, _after(last))
    # The 200 is out: an error answer now would be a second response inside
    # this one. Cutting the connection (no last chunk) tells the client the
    # export is incomplete.
    except ApiError as exc:  # a later page's query_timeout or database_busy: no bug
        log.warning("audit export cut after %d events: %s (%s)", sent, exc.code, exc.message)
    except RangeDropped as exc:
        log.warning("audit export cut after %d events: retention dropped the events "
                    "before %s meanwhile", sent, exc.kept_from.isoformat())
    except ConnectionError:
        log.info("audit export: the client went away after %d events", sent)
    except Exception:
        log.exception("audit export failed while streaming; connection cut")
    _cut(request)
    return response


def _export_format(request: web.Request) -> str:
    kind = request.query.get("format", "ndjson")
    if kind not in ("ndjson", "csv"):
        raise ValidationFailed([{"field": "format", "message": "expected ndjson or csv"}])
    return kind


async def _send(request: web.Request, response: web.StreamResponse, lines: list[str],
                last_page: bool) -> bool:
    """Write one page's ``lines`` (and the end after the last page); False, the
    connection cut, when the client does not take them in within EXPORT_WRITE_TIMEOUT:
    a client that stops reading would hold its socket and this page for ever."""
    try:
        async with asyncio.timeout(EXPORT_WRITE_TIMEOUT):
            for line in lines:
                await response.write(line.encode())
            if last_page:
                await response.write_eof()
    except TimeoutError:
        log.warning("audit export: the client did not take in a page within %s s; "
                    "connection closed", EXPORT_WRITE_TIMEOUT)
        _cut(request)
        return False
    return True


def _export_line(kind: str, row: asyncpg.Record) -> str:
    event = event_json(row)
    if kind == "ndjson":
        return json.dumps(event) + "\n"
    return _csv_line([_csv_value(event[f]) for f in CSV_FIELDS])


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def _export_page(request: web.Request, filters: dict[str, Any], after: Cursor | None
                       ) -> tuple[list[str], asyncpg.Record | None]:
    """The lines of one page of the export (at most EXPORT_BATCH events, and
    ``PAGE_MAX_BYTES`` of lines: an event carries up to 128 KiB of changes), and the
    page's last event when more follow (see :func:`~.bodies.fill_page`).

    Rows are read a few at a time and each rendered once, the connection released
    before the client gets the page: a client that reads slowly, or not at all, holds
    no database connection. A later page only while the key is live, and while
    retention has dropped nothing of the range still to export (RangeDropped): an
    export may stream for hours."""
    render = functools.partial(_export_line, _export_format(request))
    async with ended_if_client_leaves(request), reading(request.app[POOL]) as conn:
        if after is not None and not await is_live(conn, principal(request)):
            raise ApiError(401, "unauthenticated", "the key was revoked or expired")
        page = await fill_page(search_rows(conn, filters, after, EXPORT_BATCH + 1),
                               EXPORT_BATCH, render)
        # After the rows, not before: the page holds its partitions now, so a drop
        # committed before its read is in kept_from, and any later one waits for it.
        kept_from = await conn.fetchval(KEPT_FROM)
        if after is None:
            request[EXPORT_KEPT_FROM] = kept_from
        elif _dropped_meanwhile(filters.get("since"), request[EXPORT_KEPT_FROM], kept_from):
            raise RangeDropped(kept_from)
        return page


KEPT_FROM = "SELECT kept_from FROM audit_retention"  # retention's first month kept (0023)
EXPORT_KEPT_FROM = web.RequestKey[dt.datetime | None]("export_kept_from")


class RangeDropped(Exception):
    """Retention dropped months of an export's range while it streamed."""

    def __init__(self, kept_from: dt.datetime) -> None:
        super().__init__(kept_from)
        self.kept_from = kept_from


def _dropped_meanwhile(since: dt.datetime | None, first: dt.datetime | None,
                       kept_from: dt.datetime | None) -> bool:
    """Whether retention, moving its first month kept from ``first`` (when the export
    began) to ``kept_from``, dropped events of the range still to export: those from
    ``since`` on. Ended as if whole, the export would pass for every event of the range
    (an archive of the oldest month, taken before retention drops it, say)."""
    return kept_from != first and kept_from is not None and (
        since is None or since < kept_from)


# A cell a spreadsheet would run as a formula (OWASP's list): senders choose
# subjects, names and addresses, so such a cell gets a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# So does a formula after a ";" or a line break inside a cell: a spreadsheet whose list
# separator is ";" (German or French Excel) splits the row there, and, reading a quote
# only at a cell's start, ends the row at a line break the CSV quoted.
_SPLIT_FORMULA = re.compile(r"(?<=[;\t\r\n])(?=[=+\-@])")


def _csv_value(value: Any) -> str:
    if isinstance(value, list | dict):
        text = json.dumps(value)
    else:
        text = "" if value is None else str(value)
    text = _SPLIT_FORMULA.sub("'", text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_line(values: Any) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


NO_EVENT = "no such audit event"  # raised afresh each time (send.routes.NO_MESSAGE)


@routes.get("/api/v1/audit/{event_id}")
@allow(Role.AUDITOR)
async def audit_event(request: web.Request) -> web.Response:
    event_id = path_uuid(request, "event_id", NO_EVENT)
    async with reading(request.app[POOL]) as conn:
        row = await conn.fetchrow(SELECT_ONE, event_id)
    if row is None:
        raise ApiError(404, "not_found", NO_EVENT)
    return json_ok(event_json(row))


@routes.get("/api/v1/stats")
@allow(Role.AUDITOR, Role.OPERATOR)
@reads_query("since", "until", "bucket", "tz", "top", listed=True)
async def stats(request: web.Request) -> web.Response:
    query = QueryProblems(request)
    until = query.read(query_time, "until") or await database_now(request.app[POOL])
    since = query.read(query_time, "since") or until - dt.timedelta(days=1)
    top = query.read(query_int, "top", 10, 1, 100)
    bucket = request.query.get("bucket", "hour")
    if bucket not in ("hour", "day"):
        query.found.append({"field": "bucket", "message": "expected hour or day"})
    zone = _query_zone(request, query.found)
    empty = range_problem(since, until)
    if empty is not None:
        query.found.append(empty)
    elif until - since > dt.timedelta(days=400):
        query.found.append({"field": "since", "message": "range is limited to 400 days"})
    query.raise_any()
    # Off the loop: 400 days of hours take a tenth of a second.
    starts = await asyncio.to_thread(bucket_starts, since, until, bucket, zone)
    # One snapshot: the totals and the top rules count the same events.
    async with (ended_if_client_leaves(request),
                reading(request.app[POOL], one_snapshot=True) as conn):
        series_rows = await conn.fetch(STATS_SERIES, since, until, starts)
        rule_rows = await conn.fetch(STATS_TOP_RULES, since, until, top)
    series: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for row in series_rows:
        start = starts[row["bucket"] - 1].astimezone(zone).isoformat()
        series.setdefault(start, {})[row["action"]] = row["n"]
        totals[row["action"]] = totals.get(row["action"], 0) + row["n"]
    return json_ok({
        "since": since.isoformat(), "until": until.isoformat(), "bucket": bucket,
        "tz": zone.key,
        "series": [{"start": start, "counts": counts} for start, counts in series.items()],
        "totals": totals,
        "top_rules": [{"rule": r["rule"], "count": r["n"]} for r in rule_rows],
    })


def _query_zone(request: web.Request, problems: list[dict[str, Any]]) -> zoneinfo.ZoneInfo:
    """The ``tz`` parameter, an IANA time zone (UTC when absent) whose days and hours
    the buckets are: an analyst's day, 23 or 25 hours long at a DST change, is not UTC's.
    A bad name is added to ``problems`` (and UTC answered)."""
    name = request.query.get("tz", "UTC")
    # tzdata's right/ zones count leap seconds in their transitions, which zoneinfo does
    # not, and Debian's end their rules with their table: every hour of
    # right/Europe/Berlin was summer time from October 2026 on.
    if not name.startswith("right/"):
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # ValueError: a path, not a name
            pass
    problems.append({"field": "tz", "message": "expected an IANA time zone such as "
                                               "Europe/Berlin"})
    return zoneinfo.ZoneInfo("UTC")


@routes.get("/api/v1/admin-audit")
@allow(Role.AUDITOR)
@reads_query("since", "until", "action", "limit", "before", listed=True)
async def admin_audit_log(request: web.Request) -> web.Response:
    query = QueryProblems(request)
    limit = query.read(query_int, "limit", 100, 1, 1000)
    before = query.read(query_int, "before", 0, 1, 2**63 - 1) or None  # 0: no entry id
    since, until = query.read(query_time, "since"), query.read(query_time, "until")
    empty = range_problem(since, until)
    if empty is not None:
        query.found.append(empty)
    query.raise_any()
    assert limit is not None  # noqa: S101 - a bad one was raised above
    filters = {"since": since, "until": until, "action": request.query.get("action"),
               "before_id": before}
    # Cut at the statement timeout as the audit reads are: the log only grows.
    async with ended_if_client_leaves(request), reading(request.app[POOL]) as conn:
        rows = admin_audit.page_rows(conn, filters, limit + 1)
        entries, last = await fill_page(rows, limit, _entry_text)
    return json_page("entries", entries, "next_before", None if last is None else last["id"])


def _entry_text(row: asyncpg.Record) -> str:
    return dumps(admin_audit.entry_json(row))


_STR = {"type": "string"}
_STR_LIST = {"type": "array", "items": _STR}
_NULL_STR = {"type": ["string", "null"]}
_TIME_PARAM = {"type": "string", "format": "date-time"}
SCHEMAS = {
    "AuditEvent": {
        "type": "object",
        "required": ["event_id", "time", "sender", "recipients", "action", "rules"],
        "properties": {
            "event_id": _STR, "time": {"type": "string", "format": "date-time"},
            "instance": _STR, "queue_id": _NULL_STR, "message_uid": _STR,
            "client_address": _NULL_STR, "client_name": _NULL_STR, "helo": _NULL_STR,
            "auth_user": _NULL_STR, "sender": _STR, "recipients": _STR_LIST,
            "header_from": _NULL_STR, "message_id": _NULL_STR, "subject": _NULL_STR,
            "size": {"type": "integer"}, "action": _STR, "smtp_reply": _NULL_STR,
            "rules": _STR_LIST, "changes": {"type": "array"}, "policy_hash": _STR,
            "duration_ms": {"type": "number"}, "flags": _STR_LIST, "notify": _STR_LIST,
        },
    },
}
_FILTER_NOTES = {
    "client_address": "the SMTP client's IP address, or a CIDR network holding it "
                      "(192.0.2.0/24, 2001:db8::/32; host bits set are refused); an "
                      "IPv4-mapped IPv6 address or network matches as its IPv4 form",
}
_FILTER_PARAMS = [
    param(name, "query", _TIME_PARAM if name in ("since", "until")
          else {"type": "string", "enum": list(ACTIONS)} if name == "action" else _STR,
          description=_FILTER_NOTES.get(name, ""))
    for name in FILTERS
]
_LIMIT = param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000})
_READERS = [Role.AUDITOR]
# Every audit read (reading()) is cut at the statement timeout.
_READ_ERRORS = {422: [VALIDATION_FAILED], 503: ["query_timeout"]}
OPENAPI_PATHS = {
    "/api/v1/audit": {"get": operation(
        "search audit events, newest first", _READERS,
        parameters=[*_FILTER_PARAMS, _LIMIT, param(
            "cursor", "query", _STR, description="next_cursor of the previous page, with "
            "the same filters (else 422 cursor_mismatch)")],
        responses={200: {"type": "object", "required": ["events", "next_cursor"], "properties": {
            "events": {"type": "array", "items": ref("AuditEvent")},
            "next_cursor": _NULL_STR,
        }}}, errors={**_READ_ERRORS, 422: [VALIDATION_FAILED, "cursor_mismatch"]},
    )},
    "/api/v1/audit/export": {"get": operation(
        "stream matching audit events as ndjson or csv", _READERS,
        parameters=[*_FILTER_PARAMS,
                    param("format", "query", {"type": "string", "enum": ["ndjson", "csv"]})],
        responses={200: _STR}, response_type=("application/x-ndjson", "text/csv"),
        headers={200: {"Content-Disposition": header(
            'attachment; filename="audit.ndjson" (or audit.csv)', _STR)}},
        errors=_READ_ERRORS,
    )},
    "/api/v1/audit/{event_id}": {"get": operation(
        "one audit event", _READERS, parameters=[param("event_id", "path", _STR)],
        responses={200: ref("AuditEvent")},
        errors={404: ["not_found"], 503: ["query_timeout"]},
    )},
    "/api/v1/stats": {"get": operation(
        "counts by verdict per hour or day, and the top rules", [Role.AUDITOR, Role.OPERATOR],
        parameters=[param("since", "query", _TIME_PARAM), param("until", "query", _TIME_PARAM),
                    param("bucket", "query", {"type": "string", "enum": ["hour", "day"]}),
                    param("tz", "query", _STR),
                    param("top", "query", {"type": "integer", "minimum": 1, "maximum": 100})],
        responses={200: {"type": "object", "required": ["series", "totals", "top_rules"],
                         "properties": {
                             "since": _STR, "until": _STR, "bucket": _STR, "tz": _STR,
                             "series": {"type": "array", "items": {"type": "object"}},
                             "totals": {"type": "object"},
                             "top_rules": {"type": "array", "items": {"type": "object"}},
                         }}},
        errors=_READ_ERRORS,
    )},
    "/api/v1/admin-audit": {"get": operation(
        "the admin audit log, newest first", _READERS,
        parameters=[param("since", "query", _TIME_PARAM), param("until", "query", _TIME_PARAM),
                    param("action", "query", _STR), _LIMIT,
                    param("before", "query", {"type": "integer", "minimum": 1},
                          description="an entry id (a next_before): the entries older "
                          "than it that match the filters given, whatever filters "
                          "the page that gave it had")],
        responses={200: {"type": "object", "required": ["entries", "next_before"],
                         "properties": {"entries": {"type": "array",
                                                    "items": {"type": "object"}},
                                        "next_before": {"type": ["integer", "null"]}}}},
        errors=_READ_ERRORS,
    )},
}
